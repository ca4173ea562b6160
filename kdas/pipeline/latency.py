"""The pipeline's latency stage: the table the hardware-aware search reads, profiled here on the
deployment backend at the student's shape, once per machine and configuration."""

from __future__ import annotations

from typing import Any

from kdas.files import LATENCY_TABLE_FILE
from kdas.models.latency_table import machine_fingerprint
from kdas.models.ops import resolve_primitives
from kdas.pipeline.config import PipelineConfig
from kdas.pipeline.runner import StageContext
from kdas.progress import console
from kdas.utils.config import to_dict


def wanted(cfg: PipelineConfig) -> bool:
    """A table is profiled when the search has a latency target and was given no table."""
    return bool(cfg.search.latency.target) and not cfg.search.latency.table


def profile_config(cfg: PipelineConfig) -> Any:
    """The `ProfileConfig` of this run: the stage's settings, the student's size and width, the
    search's ops and cell structure, the student's macro structure, the teacher's network."""
    from kdas.export.latency_profile import ProfileConfig

    stage, student, search = cfg.latency, cfg.student, cfg.search
    return ProfileConfig(
        backend=stage.backend,
        size=tuple(student.data.size),
        C=student.model.C,
        threads=stage.threads,
        batch=stage.batch,
        ops=resolve_primitives(search.ops),
        layers=student.model.layers,
        reduction_positions=tuple(student.model.reduction_positions),
        stem_multiplier=student.model.stem_multiplier,
        steps=search.model.steps,
        multiplier=search.model.multiplier,
        teacher=cfg.teacher.model.name,
        repeats=stage.repeats,
        warmup=stage.warmup,
        fit_networks=stage.fit_networks,
    )


def latency_inputs(cfg: PipelineConfig) -> dict[str, Any]:
    """What the stage's table depends on (its hash): nothing when no table is wanted."""
    if not wanted(cfg):
        return {"wanted": False, "table": cfg.search.latency.table}
    stage = cfg.latency
    return {
        "wanted": True,
        "profile": to_dict(profile_config(cfg)),
        "machine": machine_fingerprint(stage.backend, stage.threads, stage.batch),
    }


def latency_stage(ctx: StageContext) -> dict[str, Any]:
    from kdas.export.latency_profile import profile_latency

    if not wanted(ctx.cfg):
        given = ctx.cfg.search.latency.table
        return {"table": given or None, "profiled": False}
    path = ctx.paths.latency / LATENCY_TABLE_FILE
    console.log(f"profiling the latency table on {ctx.cfg.latency.backend} -> {path}")
    table = profile_latency(profile_config(ctx.cfg), path)
    return {
        "table": str(path),
        "profiled": True,
        "backend": table.backend,
        "teacher_ms": (table.teacher or {}).get("ms"),
        "correction": to_dict(table.correction),
    }
