"""The kdas metadata of an exported model: built from the artifact, written into ONNX graphs.

The runtime reads these `kdas.*` metadata_props (`kdas.runtime.model_meta`) to know the input
size, normalisation and identity of a model, so every file export writes goes through here.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from kdas import __version__
from kdas.runtime.model_meta import PREFIX, EmbeddingModelInfo

if TYPE_CHECKING:
    import onnx

    from kdas.models.artifacts import LoadedModel

INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


def model_info(
    loaded: LoadedModel, input_size: tuple[int, int] | None = None, precision: str = "fp32"
) -> EmbeddingModelInfo:
    """What the exported graph of `loaded` says about itself."""
    height, width = input_size or tuple(loaded.spec.input_size)
    return EmbeddingModelInfo(
        model_kind=loaded.spec.kind,
        input_name=INPUT_NAME,
        output_name=OUTPUT_NAME,
        input_height=int(height),
        input_width=int(width),
        mean=tuple(float(v) for v in loaded.spec.mean),
        std=tuple(float(v) for v in loaded.spec.std),
        embedding_dim=int(loaded.model.embedding_dim),
        weights_sha256=loaded.weights_sha256,
        precision=precision,
        l2_normalized=True,
        kdas_version=__version__,
    )


def with_precision(info: EmbeddingModelInfo, precision: str) -> EmbeddingModelInfo:
    return dataclasses.replace(info, precision=precision)


def write_metadata(model: onnx.ModelProto, info: EmbeddingModelInfo) -> None:
    """Replace the `kdas.*` metadata_props of `model` by `info` (other entries are kept).

    Converters (float16, quantization) rebuild the model proto and may drop or keep the old
    entries; replacing them makes the result independent of what a converter did.
    """
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(PREFIX)]
    del model.metadata_props[:]
    for key, value in [*kept, *info.to_metadata_props().items()]:
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value


def read_metadata(model: onnx.ModelProto, source: str = "ONNX model") -> EmbeddingModelInfo:
    props = {p.key: p.value for p in model.metadata_props}
    return EmbeddingModelInfo.from_metadata_props(props, source=source)
