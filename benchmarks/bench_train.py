"""Training and inference throughput, fp32 against bf16 autocast (the CPU's AMP).

    .venv/bin/python benchmarks/bench_train.py
    .venv/bin/python benchmarks/bench_train.py --size 256x128 --batch 16

One training step is forward + CE + backward + SGD on random images (data loading is not
measured), channels_last, the median of the timed steps after two warm-ups. Inference is the
eval forward under `torch.inference_mode`. Each model runs in its own child process so a
model's threads and allocator state do not leak into the next one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_train.json"
DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), "
    "('sep_conv_3x3', 1), ('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), "
    "('dil_conv_3x3', 2)], normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), "
    "('max_pool_3x3', 1), ('skip_connect', 2), ('max_pool_3x3', 1), ('max_pool_3x3', 0), "
    "('skip_connect', 2), ('skip_connect', 2), ('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)
MODELS = ("resnet50", "resnet18", "student-c16", "student-c64")


def _build(name: str, classes: int):
    from kdas.models.genotype import load_genotype
    from kdas.models.spec import StudentArch
    from kdas.models.student import StudentNetwork
    from kdas.models.teacher import build_teacher

    if name.startswith("resnet"):
        return build_teacher(classes, name)
    channels = int(name.split("-c")[1])
    return StudentNetwork(load_genotype(DARTS_V2), classes, StudentArch(C=channels))


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2]


def measure(name: str, size: tuple[int, int], batch: int, steps: int) -> dict:
    import torch

    torch.manual_seed(0)
    model = _build(name, 751).to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, *size).to(memory_format=torch.channels_last)
    y = torch.randint(0, 751, (batch,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    row = {"model": name, "size": f"{size[0]}x{size[1]}", "batch": batch}
    for precision in ("fp32", "bf16"):
        autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")
        model.train()
        times = []
        for step in range(steps + 2):
            start = time.perf_counter()
            with autocast:
                logits, _ = model(x)
            loss = torch.nn.functional.cross_entropy(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if step >= 2:
                times.append(time.perf_counter() - start)
        row[f"train_{precision}"] = batch / _median(times)
        model.eval()
        times = []
        with torch.inference_mode():
            for step in range(steps + 2):
                start = time.perf_counter()
                with autocast:
                    model(x)
                if step >= 2:
                    times.append(time.perf_counter() - start)
        row[f"infer_{precision}"] = batch / _median(times)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--size", default="128x64")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.child:
        print(json.dumps(measure(args.child, size, args.batch, args.steps)))
        return
    rows = []
    for name in args.models.split(","):
        cmd = [sys.executable, __file__, "--child", name, "--size", args.size,
               "--batch", str(args.batch), "--steps", str(args.steps)]  # fmt: skip
        out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\nimages/s at {args.size}, batch {args.batch}, {os.cpu_count()} cores\n")
    print("| model | train fp32 | train bf16 | × | infer fp32 | infer bf16 | × |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['model']} | {r['train_fp32']:.1f} | {r['train_bf16']:.1f} | "
            f"{r['train_bf16'] / r['train_fp32']:.2f} | {r['infer_fp32']:.1f} | "
            f"{r['infer_bf16']:.1f} | {r['infer_bf16'] / r['infer_fp32']:.2f} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "load_average_after": os.getloadavg(),
                "rows": rows,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
