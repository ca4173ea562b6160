"""What an exported embedding model says about itself, stored in ONNX metadata_props.

Export writes it, the runtime reads it, the index manifest copies it: image size, mean/std and
embedding dimension travel with the model, and `weights_sha256` identifies the model so that an
index refuses queries from a different one.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, asdict, dataclass, fields

from kdas.errors import KdasError

PREFIX = "kdas."
FORMAT_VERSION = 1


@dataclass(frozen=True)
class EmbeddingModelInfo:
    model_kind: str  # "teacher" | "student"
    input_name: str  # NCHW float32 RGB, normalised with mean/std
    output_name: str  # (N, embedding_dim) float32, L2-normalised when l2_normalized
    input_height: int
    input_width: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embedding_dim: int
    weights_sha256: str  # sha256 of the source model.safetensors
    precision: str = "fp32"  # fp32 | fp16 | int8
    l2_normalized: bool = True
    kdas_version: str = ""
    format_version: int = FORMAT_VERSION

    def to_metadata_props(self) -> dict[str, str]:
        return {PREFIX + k: json.dumps(v) for k, v in asdict(self).items()}

    @classmethod
    def from_metadata_props(
        cls, props: Mapping[str, str], source: str = "model"
    ) -> EmbeddingModelInfo:
        values = {}
        for f in fields(cls):
            key = PREFIX + f.name
            if key not in props:
                if f.default is not MISSING:  # optional field: keep its default
                    continue
                raise KdasError(
                    f"{source} has no kdas metadata {key!r}: export it with `kdas export` "
                    "so the runtime knows its input size, normalisation and identity"
                )
            try:
                values[f.name] = json.loads(props[key])
            except json.JSONDecodeError:
                raise KdasError(f"{source}: metadata {key!r} is not valid JSON") from None
        values["mean"] = tuple(values["mean"])
        values["std"] = tuple(values["std"])
        return cls(**values)


def check_input_dims(dims: Sequence[int | None], info: EmbeddingModelInfo, source: str) -> None:
    """A graph's input shape (None for a dynamic dim, such as a symbolic batch) against what the
    metadata promises: NCHW with 3 channels, of the input size the preprocessing resizes to.

    Checked when a model loads, so a graph and metadata that disagree fail in one line naming
    both shapes, not as a backend traceback at the first batch.
    """
    shown = "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"
    expected = (3, info.input_height, info.input_width)
    what = f"{source}: the graph input {info.input_name!r} has shape {shown}"
    redo = "re-export the model with `kdas export` so its graph and metadata agree"
    if len(dims) != 4 or dims[1] not in (None, 3):
        raise KdasError(f"{what}, not (N, 3, H, W): kdas models take NCHW RGB images; {redo}")
    if any(d is not None and d != e for d, e in zip(dims[1:], expected, strict=True)):
        raise KdasError(
            f"{what} but its kdas metadata says (N, 3, {info.input_height}, "
            f"{info.input_width}): {redo}"
        )
