"""`kdas latency profile` and `kdas latency validate`: the latency table of the hardware-aware
search, measured through the real backend, and the check that its predictions rank networks as
the backend does.

The profile times every distinct block the macro structure holds at the deployed width (each
op at each place's edge shapes, each cell's two input-preprocessing blocks, the stem, the
head) on its own (`kdas.export.latency_blocks`), less the runtime's per-call overhead. Fusion
across blocks makes their sum biased, so a few random networks are then measured whole and
`measured ≈ a · sum + b` is fitted by least squares (method.md, "Hardware-aware search"). The
teacher is measured too, so a budget can be a share of it ("0.3x-teacher").

Everything is exported and compiled first and then timed in turns (`time_interleaved`): the
machines this runs on are shared and change speed within seconds, and timing in turns gives
every block and network the same share of the slow periods.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from kdas import __version__
from kdas.errors import KdasError
from kdas.export import latency_blocks as blocks
from kdas.models.genotype import Genotype
from kdas.models.latency_table import (
    FREE_OPS,
    Correction,
    LatencyTable,
    TableMacro,
    check_backend,
    check_fingerprint,
    machine_fingerprint,
)
from kdas.utils.atomic import atomic_write_json
from kdas.utils.outputs import check_out_file

FIT_CLASSES = 10  # classifier rows of the measured networks: not in the exported graph anyway


@dataclass
class ProfileConfig:
    """What `kdas latency profile` measures, and how: the one home of its defaults."""

    backend: str = "openvino-int8"
    size: tuple[int, int] = (256, 128)  # (H, W) of the input images
    C: int = 64  # the deployed width (the student's), not the supernet's
    threads: int = 2
    batch: int = 1
    ops: str | Sequence[str] = "auto-reid+dense"  # a primitive set name or a list of ops
    layers: int = 8
    reduction_positions: tuple[int, ...] = (2, 4, 6)
    stem_multiplier: int = 3
    steps: int = 4
    multiplier: int = 4
    teacher: str | None = "resnet50"  # resnet18/34/50, last stride 1; None: not measured
    repeats: int = 25
    warmup: int = 5
    fit_networks: int = 4  # random genotypes measured whole to fit the correction
    seed: int = 0

    def __post_init__(self) -> None:
        self.size = (int(self.size[0]), int(self.size[1]))
        self.reduction_positions = tuple(int(p) for p in self.reduction_positions)
        if isinstance(self.teacher, str) and self.teacher.lower() in ("", "none"):
            self.teacher = None

    @classmethod
    def from_table(cls, table: LatencyTable) -> ProfileConfig:
        """The settings a table was measured with, so a later measurement matches it."""
        fp, settings, macro = table.fingerprint, table.settings, table.macro
        ops = settings.get("ops") or sorted(table.table_ops())
        return cls(
            backend=table.backend, size=table.input_size, C=macro.C,
            threads=int(fp.get("threads", 1)), batch=int(fp.get("batch", 1)), ops=list(ops),
            layers=macro.layers, reduction_positions=macro.reduction_positions,
            stem_multiplier=macro.stem_multiplier, steps=macro.steps, multiplier=macro.multiplier,
            teacher=None, repeats=int(settings.get("repeats", 25)),
            warmup=int(settings.get("warmup", 5)), seed=int(settings.get("seed", 0)),
        )  # fmt: skip

    @property
    def primitives(self) -> tuple[str, ...]:
        """The resolved op set (`ops` may name a set); the table holds all but `none`."""
        from kdas.models.ops import resolve_primitives

        return resolve_primitives(self.ops if isinstance(self.ops, str) else tuple(self.ops))

    def macro(self) -> TableMacro:
        return TableMacro(
            self.C, self.layers, self.reduction_positions, self.stem_multiplier, self.steps,
            self.multiplier,
        )  # fmt: skip

    def target(self) -> blocks.Target:
        return blocks.Target(self.backend, self.threads, self.batch)

    def validate(self) -> None:
        """Every setting checked (one line each) before anything is built or timed."""
        from kdas.models.macro import check_macro
        from kdas.models.spec import MacroConfig
        from kdas.models.teacher import TEACHER_ARCHS

        check_backend(self.backend)
        primitives = self.primitives
        check_macro(
            MacroConfig(self.C, self.layers, self.reduction_positions, self.stem_multiplier)
        )
        counts = {"threads": self.threads, "batch": self.batch, "repeats": self.repeats}
        counts |= {"steps": self.steps, "multiplier": self.multiplier}
        for name, value in counts.items():
            if value < 1:
                raise KdasError(f"latency profile: {name} must be >= 1, got {value}")
        if self.multiplier > self.steps:
            raise KdasError(f"multiplier {self.multiplier} exceeds the {self.steps} cell nodes")
        if self.warmup < 0 or self.fit_networks < 0:
            raise KdasError("latency profile: warmup and fit_networks must be >= 0")
        if min(self.size) < 4:
            raise KdasError(f"latency profile: size {self.size} is too small (at least 4x4)")
        if self.teacher is not None and self.teacher not in TEACHER_ARCHS:
            raise KdasError(
                f"unknown teacher {self.teacher!r}: use {', '.join(TEACHER_ARCHS)} or none"
            )
        if "part_aware" in primitives:
            from kdas.models.part_aware import stripe_of_rows

            stripe_of_rows(min(p.edge_shape(2)[1] for p in self.macro().places(self.size)))

    def table_ops(self) -> tuple[str, ...]:
        return tuple(op for op in self.primitives if op not in FREE_OPS)


def random_genotype(
    primitives: Sequence[str], steps: int, rng: np.random.Generator, multiplier: int | None = None
) -> Genotype:
    """A genotype shaped as DARTS derives one: per node two distinct inputs among the earlier
    states, each with a non-`none` op; the cell output concatenates the last `multiplier`
    (default: all) nodes."""
    ops = [op for op in primitives if op not in FREE_OPS]
    if not ops:
        raise KdasError("a random genotype needs at least one op other than 'none'")
    multiplier = steps if multiplier is None else multiplier

    def cell() -> tuple[tuple[str, int], ...]:
        pairs = []
        for node in range(steps):
            for j in sorted(int(j) for j in rng.choice(2 + node, size=2, replace=False)):
                pairs.append((ops[int(rng.integers(len(ops)))], j))
        return tuple(pairs)

    concat = tuple(range(2 + steps - multiplier, 2 + steps))
    return Genotype(normal=cell(), normal_concat=concat, reduce=cell(), reduce_concat=concat)


def check_out_path(out_path: str | os.PathLike[str], force: bool = False) -> Path:
    """The table's file, checked before the minutes of measuring start."""
    return check_out_file(out_path, force, example="lut.json")


def fit_correction(raw_ms: Sequence[float], measured_ms: Sequence[float]) -> Correction:
    """Least squares `measured ≈ a · raw + b`; one network (or no spread in raw): the ratio.
    A fit whose slope is not positive would invert the ranking, so the ratio replaces it; tiny
    blocks that all time at zero (under the call overhead) leave the measured mean as offset."""
    raw, measured = np.asarray(raw_ms, float), np.asarray(measured_ms, float)
    if len(raw) == 0:
        return Correction()
    if raw.mean() <= 1e-9:  # every block faster than the call overhead: all fixed cost
        a, b = 1.0, float(measured.mean())
    else:
        a, b = float(measured.mean() / raw.mean()), 0.0
        if len(raw) > 1 and np.ptp(raw) > 1e-9 * raw.mean():
            slope, intercept = np.polyfit(raw, measured, 1)
            if slope > 0:
                a, b = float(slope), float(intercept)
    error = np.abs(a * raw + b - measured) / measured
    return Correction(a, b, networks=len(raw), median_abs_error=float(np.median(error)))


def _student(genotype: Genotype, cfg: ProfileConfig) -> Any:
    from kdas.models.student import StudentNetwork

    arch = {"C": cfg.C, "layers": cfg.layers, "reduction_positions": cfg.reduction_positions}
    arch["stem_multiplier"] = cfg.stem_multiplier
    return StudentNetwork(genotype, num_classes=FIT_CLASSES, arch=arch, steps=cfg.steps)


def _teacher(cfg: ProfileConfig) -> Any:
    """The teacher as kdas trains it (`TeacherArch`'s last stride), random weights."""
    from kdas.models.spec import TeacherArch
    from kdas.models.teacher import build_teacher

    arch = TeacherArch(name=cfg.teacher)  # type: ignore[arg-type]
    return build_teacher(FIT_CLASSES, arch.name, last_stride=arch.last_stride)


def _measure_networks(
    builds: Sequence[tuple[str, Callable[[], Any]]], cfg: ProfileConfig, work: Path, bar: Any,
    task: Any,
) -> list[float]:  # fmt: skip
    """Export and load every network (label, constructor) first, then time them in turns
    (`time_interleaved`), so the machine's changing speed does not favour one of them."""
    import torch

    target, calls = cfg.target(), []
    for label, build in builds:
        bar.update(task, description=label)
        torch.manual_seed(cfg.seed)
        folder = Path(tempfile.mkdtemp(prefix="network-", dir=work))
        calls.append(blocks.network_call(build(), cfg.size, target, folder, cfg.seed))
        bar.advance(task)
    bar.update(task, description=f"timing {len(calls)} network(s)")
    return blocks.time_interleaved(calls, cfg.warmup, cfg.repeats)


def _measure_blocks(
    plan: dict[blocks.BlockSpec, list[tuple[str, str]]], cfg: ProfileConfig, work: Path,
    bar: Any, task: Any,
) -> tuple[dict[str, float], dict[str, float], float]:  # fmt: skip
    """(op entries, fixed entries in table order, call overhead): every block exported and
    compiled first, then all timed in turns with the overhead graph; each entry is its median
    less the overhead's, clamped at 0."""
    target = cfg.target()
    bar.update(task, description="call overhead")
    calls: dict[Any, blocks.Call] = {"overhead": blocks.overhead_call(target, work)}
    bar.advance(task)
    for spec in plan:
        bar.update(task, description=spec.label())
        call = blocks.block_call(spec, target, work, cfg.seed)
        if call is not None:
            calls[spec] = call
        bar.advance(task)
    bar.update(task, description=f"timing {len(calls)} blocks in turns")
    medians = dict(
        zip(
            calls,
            blocks.time_interleaved(list(calls.values()), cfg.warmup, cfg.repeats),
            strict=True,
        )
    )
    overhead = medians.pop("overhead")
    ops: dict[str, float] = {}
    fixed: dict[str, float] = {}
    for spec, entries in plan.items():
        ms = max(0.0, medians[spec] - overhead) if spec in medians else 0.0
        for section, key in entries:
            (ops if section == "ops" else fixed)[key] = ms
    return ops, {key: fixed[key] for key in sorted(fixed, key=_fixed_order)}, overhead


def _settings(cfg: ProfileConfig, start: float, fit: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "repeats": cfg.repeats,
        "warmup": cfg.warmup,
        "ops": list(cfg.primitives),
        "primitive_set": cfg.ops if isinstance(cfg.ops, str) else None,
        "fit_networks": cfg.fit_networks,
        "correction_fit": fit,
        "seed": cfg.seed,
        "exporter": "legacy",
        "timing": "median of repeats calls; blocks in turns, then the networks in turns",
        "calibration": "random normal tensors (minmax)" if cfg.target().int8 else None,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "kdas": __version__,
        "seconds": round(time.perf_counter() - start, 1),
    }


def _random_networks(
    cfg: ProfileConfig, count: int, seed: int, label: str = ""
) -> tuple[list[Genotype], list[tuple[str, Any]]]:
    """`count` random genotypes of the table's op set and their (label, builder) pairs."""
    rng = np.random.default_rng(seed)
    genotypes = [
        random_genotype(cfg.primitives, cfg.steps, rng, cfg.multiplier) for _ in range(count)
    ]
    builds = [
        (f"network {i + 1}/{count}{label}", partial(_student, genotype, cfg))
        for i, genotype in enumerate(genotypes)
    ]
    return genotypes, builds


def profile_latency(
    cfg: ProfileConfig,
    out_path: str | os.PathLike[str],
    progress: bool = True,
    force: bool = False,
) -> LatencyTable:
    """Measure the table `cfg` describes on this machine and write it to `out_path`
    (atomically); settings, output path and backend are checked before any work."""
    from kdas.progress import make_progress

    start = time.perf_counter()
    cfg.validate()
    out = check_out_path(out_path, force)
    blocks.require_backend(cfg.backend)
    plan = blocks.plan_blocks(cfg.macro(), cfg.size, cfg.table_ops())
    genotypes, builds = _random_networks(cfg, cfg.fit_networks, cfg.seed, " (correction)")
    with (
        blocks.torch_threads(cfg.threads),
        tempfile.TemporaryDirectory(prefix="kdas-latency-") as tmp,
        make_progress(progress) as bar,
    ):
        total = 1 + len(plan) + len(builds) + (cfg.teacher is not None)
        task = bar.add_task("latency profile", total=total)
        ops, fixed, overhead = _measure_blocks(plan, cfg, Path(tmp), bar, task)
        teacher = [(f"teacher {cfg.teacher}", partial(_teacher, cfg))] if cfg.teacher else []
        teacher_ms = _measure_networks(teacher, cfg, Path(tmp), bar, task)  # alone: its weights
        measured = _measure_networks(builds, cfg, Path(tmp), bar, task)  # would evict theirs
    table = LatencyTable(
        fingerprint=machine_fingerprint(cfg.backend, cfg.threads, cfg.batch),
        input_size=cfg.size, macro=cfg.macro(), ops=ops, fixed=fixed, call_overhead_ms=overhead,
    )  # fmt: skip
    if teacher_ms:
        table.teacher = {"name": cfg.teacher, "ms": teacher_ms[0], "input_size": list(cfg.size)}
    fit = [
        {"raw_ms": table.predict(genotype).raw_ms, "measured_ms": ms}
        for genotype, ms in zip(genotypes, measured, strict=True)
    ]
    table.correction = fit_correction([r["raw_ms"] for r in fit], [r["measured_ms"] for r in fit])
    table.settings = _settings(cfg, start, fit)
    table.save(out)
    return table


def _fixed_order(key: str) -> tuple[int, int, str]:
    """stem, cell0.preprocess0, cell0.preprocess1, ..., head."""
    if key.startswith("cell"):
        cell, _, which = key.partition(".")
        return 1, int(cell.removeprefix("cell")), which
    return (0 if key == "stem" else 2), 0, key


# ---------------------------------------------------------------- measured against predicted


def measure_genotype(
    genotype: Genotype, source: ProfileConfig | LatencyTable, work_dir: Path | None = None
) -> float:
    """Whole-network latency (ms, median, call overhead included) of a student with this
    genotype on the backend, measured as the profile measures its fitting networks. `source`
    is a profile config or a table, whose backend, threads, batch, size and macro are used."""
    return measure_models({"network": genotype}, source, work_dir=work_dir)["network"]


def measure_models(
    genotypes: Mapping[str, Genotype], source: ProfileConfig | LatencyTable,
    teachers: Sequence[str] = (), work_dir: Path | None = None,
    structures: Mapping[str, ProfileConfig] | None = None,
) -> dict[str, float]:  # fmt: skip
    """Whole-network latency (ms) of students with these genotypes (by label) and of these
    teachers (resnet18/34/50, by name), timed in turns in one window: compared side by side,
    the machine's changing speed favours none of them. `structures` gives a student its own
    macro (C, layers, reductions); the others take `source`'s. Backend, shape and threads are
    always `source`'s."""
    from kdas.progress import make_progress

    cfg = source if isinstance(source, ProfileConfig) else ProfileConfig.from_table(source)
    cfg.validate()
    blocks.require_backend(cfg.backend)
    structures = dict(structures or {})
    if unknown := sorted(set(structures) - set(genotypes)):
        raise KdasError(f"measure_models: structures given for unknown students {unknown}")
    builds: list[tuple[str, Callable[[], Any]]] = []
    for label, genotype in genotypes.items():
        macro = structures.get(label, cfg)
        macro.validate()
        builds.append((label, partial(_student, genotype, macro)))
    for name in teachers:
        builds.append((name, partial(_teacher, dataclasses.replace(cfg, teacher=name))))
    with (
        blocks.torch_threads(cfg.threads),
        tempfile.TemporaryDirectory() as tmp,
        make_progress(False) as bar,
    ):
        task = bar.add_task("networks", total=len(builds))
        times = _measure_networks(builds, cfg, Path(work_dir or tmp), bar, task)
    return {label: ms for (label, _), ms in zip(builds, times, strict=True)}


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (ties get their average rank); None below 2 points or
    without spread."""
    if len(x) < 2:
        return None

    def ranks(values: Sequence[float]) -> np.ndarray:
        values = np.asarray(values, float)
        order = values.argsort(kind="stable")
        rank = np.empty(len(values))
        rank[order] = np.arange(len(values), dtype=float)
        for value in np.unique(values):  # ties: the mean of their ranks
            rank[values == value] = rank[values == value].mean()
        return rank

    rx, ry = ranks(x), ranks(y)
    if rx.std() == 0 or ry.std() == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [r["measured_ms"] for r in rows]
    summary: dict[str, Any] = {}
    for name, column in (("raw", "raw_ms"), ("corrected", "predicted_ms")):
        predicted = [r[column] for r in rows]
        error = [abs(p / m - 1.0) for p, m in zip(predicted, measured, strict=True)]
        summary[name] = {
            "spearman": spearman(predicted, measured),
            "median_abs_error": float(np.median(error)) if error else None,
        }
    return summary


def validate_predictor(
    table: LatencyTable,
    count: int = 20,
    seed: int = 1,
    progress: bool = True,
    allow_foreign: bool = False,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Predicted (raw sum and corrected) against measured latency of `count` random genotypes
    from the table's op set, on the table's backend and settings: does the table rank networks
    as the backend does? Returns (and writes to `out`) the rows and the summary."""
    from kdas.progress import make_progress

    if count < 1:
        raise KdasError(f"validate: count must be >= 1, got {count}")
    foreign = check_fingerprint(table, allow_foreign=allow_foreign)
    cfg = ProfileConfig.from_table(table)
    cfg.validate()
    table.check_ops(cfg.primitives)
    target = check_out_path(out, force=True) if out is not None else None
    blocks.require_backend(cfg.backend)
    genotypes, builds = _random_networks(cfg, count, seed)
    with (
        blocks.torch_threads(cfg.threads),
        tempfile.TemporaryDirectory(prefix="kdas-latency-") as tmp,
        make_progress(progress) as bar,
    ):
        task = bar.add_task("measuring networks", total=count)
        measured = _measure_networks(builds, cfg, Path(tmp), bar, task)
    rows = []
    for genotype, ms in zip(genotypes, measured, strict=True):
        prediction = table.predict(genotype)
        rows.append(
            {
                "genotype": _genotype_doc(genotype),
                "raw_ms": prediction.raw_ms,
                "predicted_ms": prediction.ms,
                "measured_ms": ms,
            }
        )
    report = {
        "table": str(table.path) if table.path else None,
        "backend": table.backend,
        "count": count,
        "seed": seed,
        "foreign": foreign,
        "correction": {"a": table.correction.a, "b": table.correction.b},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **_summary(rows),
        "rows": rows,
    }
    if target is not None:
        atomic_write_json(target, report)
    return report


def _genotype_doc(genotype: Genotype) -> dict[str, Any]:
    from kdas.models.genotype import genotype_to_dict

    doc = genotype_to_dict(genotype)
    return {k: doc[k] for k in ("normal", "normal_concat", "reduce", "reduce_concat")}


def render_validation(report: dict[str, Any]) -> None:
    """The rows and the summary as a terminal table."""
    from rich.console import Console
    from rich.table import Table

    table = Table("#", "raw sum ms", "predicted ms", "measured ms", "error")
    for i, row in enumerate(report["rows"], start=1):
        error = row["predicted_ms"] / row["measured_ms"] - 1.0
        table.add_row(
            str(i), f"{row['raw_ms']:.3f}", f"{row['predicted_ms']:.3f}",
            f"{row['measured_ms']:.3f}", f"{error:+.1%}",
        )  # fmt: skip
    console = Console()
    console.print(table)
    for name in ("raw", "corrected"):
        rho, error = report[name]["spearman"], report[name]["median_abs_error"]
        rho_text = f"{rho:.3f}" if rho is not None else "n/a"
        console.print(f"{name:>9}: Spearman {rho_text}, median |error| {error:.1%}")
