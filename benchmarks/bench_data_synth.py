"""Synthetic data generation benchmark: how long `kdas data synth` takes, per layout.

    .venv/bin/python benchmarks/bench_data_synth.py                       # 100 ids, 256x128
    .venv/bin/python benchmarks/bench_data_synth.py --ids 20 --layouts market1501

Goal: 100 identities at 256x128 (2,440 Market-layout images) well under a minute on 2 cores.
The generator is single-process; wall time, process CPU time, images per second and bytes
written are reported, plus the time `load_dataset` takes to read the result back.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from kdas.data.layouts import load_dataset  # noqa: E402
from kdas.data.synthetic import SynthConfig, synthesize  # noqa: E402
from kdas.utils.atomic import atomic_write_json  # noqa: E402

LAYOUTS = ("market1501", "dukemtmc", "cuhk03", "msmt17")


def _measure(layout: str, ids: int, size: tuple[int, int], work: Path) -> dict[str, object]:
    out = work / layout
    config = SynthConfig(ids=ids, size=size, layout=layout)
    wall, cpu = time.perf_counter(), time.process_time()
    synthesize(out, config)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    files = [p for p in out.rglob("*") if p.is_file() and p.suffix in (".jpg", ".png")]
    written = sum(p.stat().st_size for p in files)
    load = time.perf_counter()
    splits = load_dataset(out, layout)
    load = time.perf_counter() - load
    shutil.rmtree(out)
    return {
        "layout": layout,
        "ids": ids,
        "cameras": config.num_cameras,
        "images": len(files),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "images_per_s": round(len(files) / wall, 1),
        "mb_written": round(written / 1e6, 1),
        "load_s": round(load, 3),
        "train_classes": splits.num_train_pids,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ids", type=int, default=100)
    parser.add_argument("--size", default="256x128", help="height x width")
    parser.add_argument("--layouts", nargs="+", default=list(LAYOUTS), choices=LAYOUTS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "data_synth.json"))
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.split("x"))

    rows = []
    with tempfile.TemporaryDirectory(prefix="kdas-bench-synth-") as tmp:
        for layout in args.layouts:
            rows.append(_measure(layout, args.ids, (height, width), Path(tmp)))
            print(f"measured {layout}", flush=True)

    columns = [
        "layout",
        "ids",
        "cameras",
        "images",
        "wall_s",
        "cpu_s",
        "images_per_s",
        "mb_written",
        "load_s",
    ]
    print("| " + " | ".join(columns) + " |")
    print("|" + " --- |" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    atomic_write_json(
        args.out,
        {
            "benchmark": "data_synth",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": {
                "platform": platform.platform(),
                "cpus": os.cpu_count(),
                "processor": platform.processor(),
            },
            "size": [height, width],
            "rows": rows,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
