"""Run the stages in order; skip the ones whose outputs are complete and whose config (and
upstream configs) did not change; stop at the first failure, keeping what finished."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kdas.errors import KdasError
from kdas.files import EVAL_DIR, EXPORT_DIR, LATENCY_DIR, PIPELINE_STATE_FILE, REPORT_FILE
from kdas.pipeline.config import STAGES, PipelineConfig
from kdas.progress import console
from kdas.utils.atomic import atomic_write_json
from kdas.utils.config import config_hash, to_dict
from kdas.utils.outputs import check_out_dir


def _below(name: str) -> property:
    """A path of the run folder, `root / name`."""
    return property(lambda self: self.root / name, doc=f"ROOT/{name}")


@dataclass(frozen=True)
class RunPaths:
    """The stage folders and files of one run, runs/NAME/... (architecture.md's layout)."""

    root: Path
    latency = _below(LATENCY_DIR)
    teacher = _below("teacher")
    search = _below("search")
    student = _below("student")
    eval = _below(EVAL_DIR)
    export = _below(EXPORT_DIR)
    index = _below("index")
    report = _below(REPORT_FILE)
    state = _below(PIPELINE_STATE_FILE)


@dataclass
class StageContext:
    cfg: PipelineConfig
    paths: RunPaths
    resume: bool
    force: bool
    results: dict[str, Any]  # summaries of the stages run or skipped so far


StageFn = Callable[[StageContext], dict[str, Any]]


def read_state(paths: RunPaths) -> dict[str, Any]:
    if not paths.state.is_file():
        return {}
    try:
        return json.loads(paths.state.read_text())
    except json.JSONDecodeError:
        console.log(f"{paths.state} is damaged; every stage will be checked again")
        return {}


def stage_section(cfg: PipelineConfig, name: str) -> Any:
    """What a stage's outputs depend on, besides its upstream stages. The latency table also
    depends on the machine (a checkout moved to another CPU profiles again) and on the sections
    it takes its shapes from."""
    if name == "latency":
        from kdas.pipeline.latency import latency_inputs

        return latency_inputs(cfg)
    section = getattr(cfg, name, None)
    return to_dict(section) if section is not None else {}


def _chain(digest: str, record: dict[str, Any] | None) -> str:
    """What the next stage depends on: this stage's config chain and which run produced its
    outputs, so a stage that ran again (same config, --force) makes everything after it stale."""
    return config_hash({"digest": digest, "run": (record or {}).get("run_id")})


def _run_stage(
    name: str, function: StageFn, ctx: StageContext, state: dict[str, Any], digest: str
) -> dict[str, Any]:
    started = time.perf_counter()
    state[name] = {"status": "running", "hash": digest}
    atomic_write_json(ctx.paths.state, state)
    try:
        summary = function(ctx)
    except BaseException as exc:
        state[name] = {"status": "failed", "hash": digest, "error": str(exc)}
        atomic_write_json(ctx.paths.state, state)
        raise
    seconds = time.perf_counter() - started
    state[name] = {
        "status": "done",
        "hash": digest,
        "run_id": uuid.uuid4().hex,
        "seconds": seconds,
        "summary": summary,
    }
    atomic_write_json(ctx.paths.state, state)
    ctx.results[name] = summary
    console.log(f"{name}: done in {seconds:.0f} s")
    return state[name]


def run_pipeline(
    cfg: PipelineConfig,
    stage_functions: dict[str, StageFn],
    force: bool = False,
    resume: bool = False,
) -> dict[str, Any]:
    """Returns every stage's summary. A stage whose config changed is rerun from scratch."""
    unknown = [s for s in cfg.stages if s not in STAGES]
    if unknown:
        raise KdasError(f"unknown stage {unknown[0]!r} (stages: {', '.join(STAGES)})")
    paths = RunPaths(check_out_dir(Path(cfg.runs_dir) / cfg.name, "the run folder"))
    paths.root.mkdir(parents=True, exist_ok=True)
    state = read_state(paths)
    ctx = StageContext(cfg, paths, resume, force, results={})
    selected = [s for s in STAGES if s in cfg.stages]
    upstream = ""
    for name in STAGES:  # the whole chain is hashed; only the selected stages run
        digest = config_hash({"config": stage_section(cfg, name), "upstream": upstream})
        record = state.get(name, {})
        done = record.get("status") == "done"
        if name not in selected:
            if done:
                ctx.results[name] = record.get("summary", {})
            upstream = _chain(digest, record if done else None)
            continue
        console.rule(f"[bold]{selected.index(name) + 1}/{len(selected)} {name}")
        if done and record.get("hash") == digest and not force and name != "report":
            console.log(f"{name}: up to date, skipped (use --force to run it again)")
            ctx.results[name] = record.get("summary", {})
        else:
            ctx.force = force or (bool(record) and record.get("hash") != digest)
            _run_stage(name, stage_functions[name], ctx, state, digest)
        upstream = _chain(digest, state[name])
    return ctx.results
