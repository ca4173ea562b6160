"""Search step throughput and peak memory: supernet width × input size, with and without teacher.

    .venv/bin/python benchmarks/bench_search.py                      # full grid (a few minutes)
    .venv/bin/python benchmarks/bench_search.py --channels 8 --sizes 128x64 --steps 2

One search step is what `kdas search` does per batch pair (Algorithm 1): a weight step on a
P x K = 8 x 2 D_train batch, then a first-order architecture step on a D_val batch, each with the
teacher's logits when distillation is on (the teacher is a ResNet-50 in eval mode under no_grad,
like the paper's). Throughput counts both batches (32 images per step). Each configuration runs
in its own child process, so its peak RSS (VmHWM) is its own; the numbers are medians over the
timed steps after one warm-up step. Inputs are random tensors: data loading is not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_search.json"


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def run_one(
    channels: int, size: tuple[int, int], teacher: bool, steps: int, precision: str
) -> dict:
    """One configuration, measured in this (child) process."""
    import torch

    from kdas.losses import KDSchedule, LossConfig, ReIDObjective
    from kdas.models.spec import SupernetArch
    from kdas.models.supernet import Supernet
    from kdas.models.teacher import build_teacher
    from kdas.search.architect import Architect, Batch
    from kdas.search.config import SearchOptimConfig
    from kdas.search.loop import weight_step

    torch.manual_seed(0)
    classes, p, k = 751, 8, 2
    net = Supernet(classes, SupernetArch(C=channels))
    objective = ReIDObjective(LossConfig(kd=KDSchedule("dynamic" if teacher else "none")), 200)
    kd = objective.state(0)
    mentor = build_teacher(classes, "resnet50").eval() if teacher else None
    cfg = SearchOptimConfig()
    optimizer = torch.optim.SGD(net.weight_parameters(), lr=cfg.w_lr, momentum=0.9)
    architect = Architect(net, objective, cfg, precision=precision)
    targets = torch.arange(p).repeat_interleave(k)

    def batch() -> Batch:
        images = torch.randn(p * k, 3, *size)
        logits = None
        if mentor is not None:
            with (
                torch.no_grad(),
                torch.autocast("cpu", torch.bfloat16, enabled=precision == "bf16"),
            ):
                logits = mentor.classify(images).float()
        return Batch(images, targets, logits)

    times, teacher_times = [], []
    for step in range(steps + 1):
        start = time.perf_counter()
        train, val = batch(), batch()
        mid = time.perf_counter()
        weight_step(net, train, objective, kd, optimizer, cfg.grad_clip, precision)
        architect.step(val, train, kd, w_lr=cfg.w_lr, w_optimizer=optimizer)
        end = time.perf_counter()
        if step > 0:
            times.append(end - start)
            teacher_times.append(mid - start)
    times.sort()
    teacher_times.sort()
    step_s = times[len(times) // 2]
    return {
        "C": channels,
        "size": f"{size[0]}x{size[1]}",
        "teacher": teacher,
        "precision": precision,
        "step_s": step_s,
        "teacher_s": teacher_times[len(teacher_times) // 2] if teacher else 0.0,
        "images_per_s": 2 * p * k / step_s,
        "peak_rss_mb": _peak_rss_mb(),
        "supernet_params_m": sum(x.numel() for x in net.weight_parameters()) / 1e6,
    }


def _child(args: argparse.Namespace) -> None:
    size = tuple(int(v) for v in args.child_size.split("x"))
    print(json.dumps(run_one(args.child_c, size, args.child_teacher, args.steps, args.precision)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--channels", default="8,16,32")
    parser.add_argument("--sizes", default="128x64,256x128")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--child-c", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-size", help=argparse.SUPPRESS)
    parser.add_argument("--child-teacher", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_c is not None:
        _child(args)
        return
    rows = []
    for size in args.sizes.split(","):
        for channels in (int(c) for c in args.channels.split(",")):
            for teacher in (False, True):
                cmd = [sys.executable, __file__, "--child-c", str(channels), "--child-size", size,
                       "--steps", str(args.steps), "--precision", args.precision]  # fmt: skip
                if teacher:
                    cmd.append("--child-teacher")
                out = subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=ROOT)
                row = json.loads(out.stdout.strip().splitlines()[-1])
                rows.append(row)
                print(
                    f"C={row['C']:>2} {row['size']:>7} teacher={'yes' if teacher else 'no ':3} "
                    f"step {row['step_s']:6.2f} s  {row['images_per_s']:6.1f} img/s  "
                    f"peak {row['peak_rss_mb']:6.0f} MB",
                    flush=True,
                )
    print("\n| C | input | teacher | step (s) | of which teacher (s) | images/s | peak RSS (MB) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['C']} | {r['size']} | {'yes' if r['teacher'] else 'no'} | {r['step_s']:.2f} | "
            f"{r['teacher_s']:.2f} | {r['images_per_s']:.1f} | {r['peak_rss_mb']:.0f} |"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "load_average_after": os.getloadavg(),
        "precision": args.precision,
        "rows": rows,
    }
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
