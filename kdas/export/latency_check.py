"""The student's predicted latency (from a latency table) next to what `kdas bench` measured on
the table's backend: the check that the search optimised the number the deployment sees."""

from __future__ import annotations

import os
from typing import Any

from kdas.models.artifacts import read_artifact_config
from kdas.models.genotype import load_genotype
from kdas.models.latency_table import check_fingerprint, load_latency_table

# latency-table backend -> the `kdas bench` backend that runs the same thing
BENCH_BACKEND = {
    "ort-fp32": "onnx",
    "ort-int8": "onnx-int8",
    "openvino-fp32": "openvino-fp32",
    "openvino-bf16": "openvino-bf16",
    "openvino-int8": "openvino-int8",
    "tensorrt-fp16": "tensorrt",
}


def _student_shape(model: dict[str, Any]) -> tuple[int, tuple[int, int]]:
    return int((model.get("student") or {}).get("C", 0)), tuple(model["input_size"])


def predicted_vs_measured(
    table_path: str | os.PathLike[str],
    student_dir: str | os.PathLike[str],
    rows: list[dict[str, Any]],
    allow_foreign: bool = False,
) -> dict[str, Any]:
    """{"backend", "batch", "predicted_ms", "raw_ms", "measured_ms", "error"}; with a "note"
    instead of the comparison where the table does not describe this student or backend run."""
    table = load_latency_table(table_path)
    foreign = check_fingerprint(table, allow_foreign=allow_foreign)
    model = read_artifact_config(student_dir)["model"]
    genotype = load_genotype(model["genotype"])
    prediction = table.predict(genotype)
    batch = int(table.fingerprint.get("batch", 1))
    backend = BENCH_BACKEND.get(table.backend)
    entry: dict[str, Any] = {
        "table": str(table_path),
        "table_backend": table.backend,
        "backend": backend,
        "batch": batch,
        "predicted_ms": prediction.ms,
        "raw_ms": prediction.raw_ms,
        "foreign": foreign,
    }
    C, size = _student_shape(model)
    if (C, size) != (table.macro.C, tuple(table.input_size)):
        entry["note"] = (
            f"the table is for C={table.macro.C} at {table.input_size[0]}x{table.input_size[1]}, "
            f"the student is C={C} at {size[0]}x{size[1]}"
        )
        return entry
    measured = [
        r for r in rows
        if r["model"] == "student" and r["backend"] == backend and r["batch"] == batch
        and r["status"] == "ok"
    ]  # fmt: skip
    if not measured:
        entry["note"] = f"the bench did not measure {backend} at batch {batch}"
        return entry
    entry["measured_ms"] = measured[0]["p50_ms"]
    entry["error"] = prediction.ms / entry["measured_ms"] - 1.0
    return entry
