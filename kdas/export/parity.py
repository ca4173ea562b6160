"""Does the exported model retrieve like the PyTorch model? Embeddings, metrics, rank lists.

Both run on the evaluation split (query + gallery) of a data set: the PyTorch model through
the training eval transform, the exported one through the runtime (its numpy preprocessing and
its ONNX Runtime session, OpenVINO IR or TensorRT engine), so the check covers everything the
service does.
Each precision has one threshold, read from the exported model's own metadata:

| precision | check | why |
| --- | --- | --- |
| fp32 | max |embedding difference| <= 1e-4 | same arithmetic, only kernel rounding |
| fp16 | min cosine(PyTorch, exported) >= 0.999 | rounding is expected; the direction must hold |
| bf16 | min cosine >= 0.99 | as fp16, with 8 mantissa bits instead of 11 (OpenVINO IRs) |
| int8 | mAP drop <= 0.01 (1 point) | embeddings move; what matters is retrieval |

and for every precision the exported model must name the same weights (sha256).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from kdas.constants import DEFAULT_LAYOUT
from kdas.errors import KdasError
from kdas.files import PARITY_FILE
from kdas.utils.atomic import atomic_write_json

THRESHOLDS: dict[str, tuple[str, str, float]] = {
    "fp32": ("max_abs_diff", "<=", 1e-4),
    "fp16": ("min_cosine", ">=", 0.999),
    # bf16 keeps fp32's exponent but only an 8-bit mantissa (fp16: 11 bits), so each rounding
    # is 8x coarser than fp16's: the embedding's direction is checked with a looser bound.
    "bf16": ("min_cosine", ">=", 0.99),
    "int8": ("map_drop", "<=", 0.01),
}
TOP_K = 10


def _unit(x: np.ndarray) -> np.ndarray:
    from kdas.evaluation.distances import l2_normalize

    return l2_normalize(x)


def _has_true_match(query: list, gallery: list) -> bool:
    """Some query has a gallery image of its identity from another camera (Market protocol)."""
    cameras: dict[int, set[int]] = {}
    for r in gallery:
        cameras.setdefault(r.pid, set()).add(r.camid)
    return any(cameras.get(r.pid, set()) - {r.camid} for r in query if r.pid > 0)


def _retrieval(
    q: np.ndarray, g: np.ndarray, query: list, gallery: list
) -> tuple[dict | None, np.ndarray]:
    """mAP / rank-1 (None when no query can be matched) and the top-k gallery indices."""
    from kdas.evaluation import compute_distance_matrix, evaluate_rank

    dist = compute_distance_matrix(q, g, metric="cosine")
    k = min(TOP_K, dist.shape[1])
    top = np.argsort(dist, axis=1, kind="stable")[:, :k]
    if not _has_true_match(query, gallery):
        return None, top
    result = evaluate_rank(
        dist,
        np.array([r.pid for r in query]),
        np.array([r.pid for r in gallery]),
        np.array([r.camid for r in query]),
        np.array([r.camid for r in gallery]),
    )
    return {"mAP": float(result.mAP), "rank1": result.rank(1)}, top


def _top_k_agreement(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Mean share of the top-k gallery items both rank lists hold, and how often the whole
    top-k list (order included) is identical."""
    overlap = [len(set(x) & set(y)) / a.shape[1] for x, y in zip(a, b, strict=True)]
    return {
        "top10_overlap": float(np.mean(overlap)),
        "top10_identical": float(np.mean(np.all(a == b, axis=1))),
    }


def _check(name: str, value: float | bool, op: str, limit: float | bool) -> dict[str, Any]:
    if op == "==":
        passed = value == limit
    elif op == "<=":
        passed = value <= limit
    else:
        passed = value >= limit
    return {"name": name, "value": value, "op": op, "limit": limit, "passed": bool(passed)}


def _records(records: list, num_images: int | None, what: str) -> list:
    """All records, or `num_images` of them spread evenly over the split: the splits are
    sorted by identity (Market's distractors first), so the first N would cover one or two
    identities and often no query would have its match in the gallery."""
    if num_images is not None:
        if num_images < 1:
            raise KdasError(f"--num-images must be at least 1, got {num_images}")
        if num_images < len(records):
            index = np.unique(np.linspace(0, len(records) - 1, num_images).round().astype(int))
            records = [records[i] for i in index]
    if not records:
        raise KdasError(f"the data set has no {what} images to compare on")
    return records


def write_keyed(path: Path, key: str, report: dict[str, Any]) -> Path:
    """parity.json holds one entry per exported file name, so checks of student.onnx and
    student.int8.onnx in the same export folder sit side by side."""
    existing: dict[str, Any] = {}
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            existing = {}
        if not isinstance(existing, dict):
            existing = {}
    existing[key] = report
    return atomic_write_json(path, existing)


def check_parity(
    model_dir: str | os.PathLike[str],
    exported: str | os.PathLike[str],
    data_root: str | os.PathLike[str],
    layout: str = DEFAULT_LAYOUT,
    options: dict[str, Any] | None = None,
    num_images: int | None = None,
    out: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    providers: str = "auto",
    device: str | None = None,
    reference_cache: dict[tuple, dict[str, np.ndarray]] | None = None,
) -> dict[str, Any]:
    """Compare a model folder with its export on the evaluation split; returns the report and
    writes it into `out` (default: parity.json beside the exported file) under its file name.
    `device` is the OpenVINO device of an IR (None: the runtime's default, CPU).
    `reference_cache` (a dict the caller keeps) holds the PyTorch embeddings per model folder,
    data and input size, so checking several exports of one model runs PyTorch once.

    `report["passed"]` is False when any check fails; the caller decides what that means
    (the CLI exits with code 1).
    """
    from kdas.data.layouts import load_dataset
    from kdas.evaluation.extract import extract_features
    from kdas.models import load as load_model
    from kdas.runtime.embedder import Embedder
    from kdas.runtime.openvino_model import DEFAULT_DEVICE, is_ir_file

    exported = Path(exported)
    if device is not None and not is_ir_file(exported):
        raise KdasError(f"--ov-device applies to OpenVINO IRs (.xml), not to {exported.name}")
    # the exported file first: a missing .bin or an unknown device fails before torch loads
    embedder = Embedder(exported, providers=providers, **({"device": device} if device else {}))
    loaded = load_model(str(model_dir))
    info = embedder.info
    if info.precision not in THRESHOLDS:
        raise KdasError(f"{exported}: unknown precision {info.precision!r} in its metadata")
    splits = load_dataset(str(data_root), layout, **(options or {}))
    query = _records(splits.query, num_images, "query")
    gallery = _records(splits.gallery, num_images, "gallery")
    size = (info.input_height, info.input_width)

    key = (loaded.weights_sha256, str(data_root), layout, json.dumps(options or {}, sort_keys=True),
           num_images, size)  # fmt: skip
    ref = (reference_cache or {}).get(key) or {
        name: _unit(
            extract_features(loaded.model, records, size, batch_size, progress=False).features
        )
        for name, records in (("query", query), ("gallery", gallery))
    }
    if reference_cache is not None:
        reference_cache[key] = ref
    exp = {
        name: embedder.embed_images([r.path for r in records], batch_size=batch_size)
        for name, records in (("query", query), ("gallery", gallery))
    }
    all_ref = np.concatenate([ref["query"], ref["gallery"]])
    all_exp = np.concatenate([exp["query"], exp["gallery"]])
    if all_ref.shape != all_exp.shape:
        raise KdasError(
            f"{exported} gives {all_exp.shape[1]}-d embeddings, the model {all_ref.shape[1]}-d: "
            "they are not the same model"
        )
    cosine = np.einsum("ij,ij->i", all_ref, all_exp)
    torch_metrics, torch_top = _retrieval(ref["query"], ref["gallery"], query, gallery)
    export_metrics, export_top = _retrieval(exp["query"], exp["gallery"], query, gallery)
    measures = {
        "max_abs_diff": float(np.abs(all_ref - all_exp).max()),
        "min_cosine": float(cosine.min()),
        "mean_cosine": float(cosine.mean()),
        "map_drop": (
            torch_metrics["mAP"] - export_metrics["mAP"]
            if torch_metrics and export_metrics
            else None
        ),
        **_top_k_agreement(torch_top, export_top),
    }
    metric, op, limit = THRESHOLDS[info.precision]
    if measures[metric] is None:
        raise KdasError(
            f"no query of the compared images has a true match in the gallery, so there is no "
            f"mAP to check {info.precision} against: use more (or all) images"
        )
    checks = [
        _check("same_weights", info.weights_sha256 == loaded.weights_sha256, "==", True),
        _check(metric, measures[metric], op, limit),
    ]
    report = {
        "model": str(model_dir),
        "exported": str(exported),
        "backend": embedder.backend,
        "providers": embedder.providers,
        "device": (device or DEFAULT_DEVICE).upper() if embedder.backend == "openvino" else None,
        "precision": info.precision,
        "data": {"root": str(data_root), "layout": layout, "options": options or {}},
        "num_query": len(query),
        "num_gallery": len(gallery),
        "torch": torch_metrics,
        "exported_metrics": export_metrics,
        **measures,
        "checks": checks,
        "passed": all(c["passed"] for c in checks),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    target = Path(out) if out else exported.parent / PARITY_FILE
    write_keyed(target, exported.name, report)
    report["written_to"] = str(target)
    return report


def render_parity(report: dict[str, Any]) -> None:
    """A rich table of the report: what was compared, the numbers, each check."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"parity: {Path(report['exported']).name} ({report['precision']})")
    table.add_column("measure")
    table.add_column("PyTorch", justify="right")
    table.add_column(Path(report["exported"]).name, justify="right")
    for key in ("mAP", "rank1"):
        values = [(report[side] or {}).get(key) for side in ("torch", "exported_metrics")]
        table.add_row(key, *("-" if v is None else f"{v:.4f}" for v in values))
    for key, fmt in (
        ("max_abs_diff", ".3g"), ("min_cosine", ".6f"), ("mean_cosine", ".6f"), ("map_drop", ".4f"),
    ):  # fmt: skip
        table.add_row(key, "", "-" if report[key] is None else format(report[key], fmt))
    for key in ("top10_overlap", "top10_identical"):
        table.add_row(key, "", f"{report[key]:.3f}")
    for check in report["checks"]:
        verdict = "[green]pass[/green]" if check["passed"] else "[red]FAIL[/red]"
        table.add_row(f"check {check['name']}", f"{check['op']} {check['limit']}", verdict)
    console = Console()
    console.print(table)
    console.print(
        f"{report['num_query']} queries x {report['num_gallery']} gallery, "
        f"backend {report['backend']}"
        + (f" on {report['device']}" if report.get("device") else "")
        + f" -> {report['written_to']}"
    )


def require_passed(report: dict[str, Any]) -> None:
    """Raise KdasError (exit code 1) naming every failed check of the report."""
    failed = [c for c in report["checks"] if not c["passed"]]
    if failed:
        raise KdasError(
            "parity failed: "
            + "; ".join(
                f"{c['name']} = {c['value']} (needs {c['op']} {c['limit']})" for c in failed
            )
        )
