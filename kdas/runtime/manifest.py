"""manifest.json: which model made an index, how it was built, and checksums of its files.

The model's identity (`weights_sha256`) is what stops a query embedded by one model from being
searched against a gallery embedded by another: the numbers would look fine and mean nothing.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kdas import __version__
from kdas.errors import KdasError
from kdas.files import MANIFEST_FILE
from kdas.runtime.model_meta import EmbeddingModelInfo

FORMAT = "kdas-gallery-index"
FORMAT_VERSION = 1


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class IndexManifest:
    model: EmbeddingModelInfo
    index_type: str
    index_params: dict[str, Any]
    dimension: int
    count: int
    stored_vectors: int  # count + removed vectors a graph index still holds
    next_id: int
    metric: str = "inner_product"
    model_file: str | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> bytes, sha256
    kdas_version: str = __version__
    created: str = field(default_factory=now_iso)
    updated: str = field(default_factory=now_iso)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["model"] = asdict(self.model)
        return data

    @classmethod
    def from_dict(cls, data: Any, source: str) -> IndexManifest:
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise KdasError(f"{source} is not a kdas index manifest")
        if int(data.get("format_version", -1)) != FORMAT_VERSION:
            raise KdasError(
                f"{source} has index format version {data.get('format_version')}, this kdas "
                f"reads {FORMAT_VERSION}: rebuild the index with `kdas index build`"
            )
        try:
            model = dict(data["model"])
            model["mean"] = tuple(model["mean"])
            model["std"] = tuple(model["std"])
            values = {k: data[k] for k in cls.__dataclass_fields__ if k in data and k != "model"}
            manifest = cls(model=EmbeddingModelInfo(**model), **values)
        except (KeyError, TypeError, ValueError) as exc:
            raise KdasError(f"{source} is malformed ({exc}): rebuild the index") from None
        expected_types = {
            "index_type": str, "index_params": dict, "dimension": int, "count": int,
            "stored_vectors": int, "next_id": int, "files": dict,
        }  # fmt: skip
        for name, kind in expected_types.items():
            value = getattr(manifest, name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise KdasError(
                    f"{source}: {name} should be {kind.__name__}, got {value!r}; rebuild the index"
                )
        if not all(isinstance(v, dict) for v in manifest.files.values()):
            raise KdasError(f"{source}: files entries are malformed; rebuild the index")
        return manifest


def read_manifest(folder: Path) -> IndexManifest:
    path = folder / MANIFEST_FILE
    if folder.exists() and not folder.is_dir():
        raise KdasError(f"{folder} is a file, not an index folder (built by `kdas index build`)")
    if not folder.is_dir():
        raise KdasError(f"index folder {folder} does not exist: build one with `kdas index build`")
    if not path.is_file():
        raise KdasError(f"{folder} is not a kdas index: {MANIFEST_FILE} is missing")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise KdasError(f"{path} is corrupt (not valid JSON): rebuild the index") from None
    return IndexManifest.from_dict(data, str(path))


def check_model(manifest: IndexManifest, expected: EmbeddingModelInfo, folder: Path) -> None:
    """Refuse an index made by another model, in one line that says what to do."""
    built, given = manifest.model.weights_sha256, expected.weights_sha256
    if built != given:
        raise KdasError(
            f"index {folder} was built with model weights {built[:12]}, not with this model "
            f"({given[:12]}): rebuild the index with this model (`kdas index build`)"
        )
    if manifest.dimension != expected.embedding_dim:
        raise KdasError(
            f"index {folder} holds {manifest.dimension}-d embeddings, the model makes "
            f"{expected.embedding_dim}-d ones: rebuild the index with this model"
        )
    built_input = _input_of(manifest.model)
    if built_input != _input_of(expected):
        raise KdasError(
            f"index {folder} was built from images prepared as {built_input}, this model "
            f"expects {_input_of(expected)}: the same weights at another input size or "
            "normalisation give other embeddings; rebuild the index with this model"
        )
    if manifest.model.precision != expected.precision:
        warnings.warn(
            f"index {folder} was built with the {manifest.model.precision} export, queries use "
            f"the {expected.precision} one: scores shift slightly (check with `kdas parity`)",
            stacklevel=2,
        )


def _input_of(info: EmbeddingModelInfo) -> str:
    mean = ", ".join(f"{v:g}" for v in info.mean)
    std = ", ".join(f"{v:g}" for v in info.std)
    return f"{info.input_height}x{info.input_width}, mean ({mean}), std ({std})"
