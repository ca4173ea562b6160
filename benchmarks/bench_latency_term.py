"""What the latency term costs a search step: E[lat] + its α gradient against one whole step.

    .venv/bin/python benchmarks/bench_latency_term.py       # C = 8 at 128x64, C = 32 at 256x128

One search step is a weight step on a P x K = 8 x 2 batch and a first-order α step on another,
without a teacher (the teacher only adds to the step, so this is the term's worst share). The
term is timed on its own (forward and α gradient, median of 200) and the step with and without
it (median of a few). Results: benchmarks/results/bench_latency_term.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_latency_term.json"


def _hand_table(macro_C: int, size: tuple[int, int]):  # type: ignore[no-untyped-def]
    """A table with an entry for every op of auto-reid+dense (values: a rough cost model), so
    the timing needs no profile; the term's cost does not depend on the values."""
    from kdas.models.latency_table import LatencyTable, TableMacro, machine_fingerprint, op_key
    from kdas.models.ops import resolve_primitives

    macro = TableMacro(C=macro_C)
    ops, fixed = {}, {"stem": 1.0, "head": 0.1}
    for place in macro.places(size):
        for C, H, W, stride in place.edge_shapes():
            for k, op in enumerate(resolve_primitives("auto-reid+dense")):
                if op != "none":
                    ops[op_key(op, C, H, W, stride)] = 1e-6 * (k + 1) * C * H * W
        fixed |= {f"cell{place.index}.preprocess{j}": 0.1 for j in (0, 1)}
    return LatencyTable(machine_fingerprint("ort-fp32", 2, 1), size, macro, ops, fixed)


def measure(channels: int, size: tuple[int, int], steps: int) -> dict:
    import torch

    from kdas.losses import KDSchedule, LossConfig, ReIDObjective
    from kdas.models.ops import resolve_primitives
    from kdas.models.spec import SupernetArch
    from kdas.models.supernet import Supernet
    from kdas.search.architect import Architect, Batch
    from kdas.search.config import SearchOptimConfig
    from kdas.search.latency import LatencyTerm
    from kdas.search.loop import weight_step

    torch.manual_seed(0)
    primitives = resolve_primitives("auto-reid+dense")
    net = Supernet(751, SupernetArch(C=channels), primitives)
    term = LatencyTerm(_hand_table(64, size), primitives, 4, target_ms=1.0, weight=1.0)
    objective = ReIDObjective(LossConfig(kd=KDSchedule("none")), 200)
    kd = objective.state(0)
    cfg = SearchOptimConfig()
    optimizer = torch.optim.SGD(net.weight_parameters(), lr=cfg.w_lr, momentum=0.9)
    images = torch.randn(16, 3, *size)
    pids = torch.arange(8).repeat_interleave(2)
    batch = Batch(images, pids, None)

    term_times = []
    for _ in range(200):
        t0 = time.perf_counter()
        out = term(net.alpha_normal, net.alpha_reduce)
        torch.autograd.grad(out.total, [net.alpha_normal, net.alpha_reduce], allow_unused=True)
        term_times.append(time.perf_counter() - t0)
    step_times = {}
    for name, penalty in (("without", None), ("with", term)):
        architect = Architect(net, objective, cfg, penalty=penalty)
        times = []
        for i in range(steps + 1):
            t0 = time.perf_counter()
            weight_step(net, batch, objective, kd, optimizer, cfg.grad_clip)
            architect.step(batch, batch, kd, cfg.w_lr)
            if i:  # the first step warms up
                times.append(time.perf_counter() - t0)
        step_times[name] = statistics.median(times)
    term_ms = statistics.median(term_times) * 1e3
    return {
        "channels": channels,
        "size": list(size),
        "ops": len(primitives),
        "term_ms": term_ms,
        "step_ms_without": step_times["without"] * 1e3,
        "step_ms_with": step_times["with"] * 1e3,
        "term_share_of_step": term_ms / (step_times["without"] * 1e3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="timed steps per configuration")
    args = parser.parse_args()
    import torch

    from kdas.utils.machine import cpu_model

    torch.set_num_threads(2)
    rows = [measure(8, (128, 64), args.steps), measure(32, (256, 128), args.steps)]
    result = {"cpu": cpu_model(), "threads": 2, "rows": rows, "date": time.strftime("%Y-%m-%d")}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(result["cpu"])
    print("| supernet | ops | term ms (fwd + grad) | step ms without | step ms with | share |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| C={r['channels']} {r['size'][0]}x{r['size'][1]} | {r['ops']} | "
              f"{r['term_ms']:.3f} | {r['step_ms_without']:.0f} | {r['step_ms_with']:.0f} | "
              f"{100 * r['term_share_of_step']:.3f} % |")  # fmt: skip


if __name__ == "__main__":
    main()
