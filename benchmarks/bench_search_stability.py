"""DARTS-collapse signals of finished searches, per epoch: α entropy and the skip/pool counts
of the α-argmax cells (issue 16, item 5). Searches made before kdas logged these signals are
read from their α history (`alphas.jsonl` holds softmax(α), so log-weights give the same cells).

  python benchmarks/bench_search_stability.py [runs/protocol/ablation]

Prints one row per search and epoch and writes benchmarks/results/search_stability.json.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from kdas.files import CONFIG_FILE
from kdas.models.derive import derive_genotype
from kdas.search.stability import stability_record
from kdas.utils.atomic import atomic_write_json
from kdas.utils.machine import cpu_model

RESULTS = Path("benchmarks/results/search_stability.json")


def signals(search_dir: Path) -> list[dict]:
    config = json.loads((search_dir / CONFIG_FILE).read_text())["config"]
    steps, multiplier = config["model"]["steps"], config["model"]["multiplier"]
    rows = []
    for line in (search_dir / "alphas.jsonl").read_text().splitlines():
        h = json.loads(line)
        primitives = h["genotype"]["primitives"]
        alphas = {cell: torch.tensor(h["alphas"][cell]) for cell in ("normal", "reduce")}
        argmax = derive_genotype(
            alphas["normal"].clamp_min(1e-12).log(),
            alphas["reduce"].clamp_min(1e-12).log(),
            primitives,
            steps=steps,
            multiplier=multiplier,
        )
        record = stability_record(alphas, argmax)
        rows.append({"epoch": h["epoch"] + 1, **record})
    return rows


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/protocol/ablation")
    out = {"cpu": cpu_model(), "searches": {}}
    print(f"{'search':24} {'epoch':>5} {'H normal':>9} {'H reduce':>9} {'skip':>5} {'pool':>5}")
    for search_dir in sorted(root.glob("*/seed*/search")):
        if not (search_dir / CONFIG_FILE).is_file():
            continue
        name = str(search_dir.parent.relative_to(root))
        rows = signals(search_dir)
        out["searches"][name] = rows
        for r in rows:
            counts = r["alpha_op_count"]["normal"]
            print(
                f"{name:24} {r['epoch']:>5} {r['alpha_entropy']['normal']:9.3f} "
                f"{r['alpha_entropy']['reduce']:9.3f} {counts['skip']:>5} {counts['pool']:>5}"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(RESULTS, out)


if __name__ == "__main__":
    main()
