"""Images in, L2-normalised embeddings out: ONNX Runtime, OpenVINO or a TensorRT engine, never
torch. The backend follows the file type (`.onnx`, `.xml`, `.engine`) unless one is named."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdas.errors import KdasError
from kdas.evaluation.distances import l2_normalize
from kdas.runtime.model_meta import EmbeddingModelInfo
from kdas.runtime.openvino_model import DEFAULT_DEVICE, OpenVINOModel, is_ir_file
from kdas.runtime.preprocess import ImageSource, preprocess_batch
from kdas.runtime.session import DEFAULT_PROVIDERS, create_session, read_model_info
from kdas.runtime.tensorrt_engine import TensorRTRunner, is_engine_file

ProgressCallback = Callable[[int, int], None]  # (images done, images total)
DEFAULT_BATCH_SIZE = 32  # images per inference call
EMBEDDER_BACKENDS = ("auto", "onnxruntime", "openvino", "tensorrt")


def resolve_backend(model_path: str | os.PathLike[str], backend: str = "auto") -> str:
    """The backend a model file runs on: by its type, or the one the user named (checked)."""
    if backend not in EMBEDDER_BACKENDS:
        raise KdasError(f"unknown backend {backend!r}: use {', '.join(EMBEDDER_BACKENDS)}")
    by_type = (
        "tensorrt"
        if is_engine_file(model_path)
        else "openvino"
        if is_ir_file(model_path)
        else "onnxruntime"
    )
    if backend not in ("auto", by_type):
        hint = " (export an IR with `kdas export MODEL_DIR --to openvino`)"
        raise KdasError(
            f"{Path(model_path).name} is a {by_type} model file; it cannot run on {backend}"
            + (hint if backend == "openvino" else "")
        )
    return by_type


@dataclass(frozen=True)
class EmbedderChoice:
    """Which backend runs a model file, and where: the one value the runtime's entry points
    (index build/add/query/eval, the service) pass down to the `Embedder`."""

    backend: str = "auto"  # auto: by file type (.onnx, .xml, .engine)
    providers: str | tuple[str, ...] = DEFAULT_PROVIDERS  # ONNX Runtime execution providers
    device: str = DEFAULT_DEVICE  # OpenVINO device: CPU, GPU, NPU or AUTO
    threads: int | None = None  # intra-op threads (None: the backend's default)

    def open(self, model_path: str | os.PathLike[str]) -> Embedder:
        return Embedder(
            model_path,
            providers=self.providers,
            intra_op_threads=self.threads,
            backend=self.backend,
            device=self.device,
        )


class Embedder:
    """Wraps one exported embedding model.

    The ONNX file (or the engine's sidecar) says its input size, normalisation and output
    dimension, so the caller never passes them and cannot get them wrong.
    """

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        providers: str | Sequence[str] = DEFAULT_PROVIDERS,
        intra_op_threads: int | None = None,
        graph_optimization: str = "all",
        backend: str = "auto",
        device: str = DEFAULT_DEVICE,
    ) -> None:
        self.model_path = Path(model_path)
        self._trt: TensorRTRunner | None = None
        self._ov: OpenVINOModel | None = None
        chosen = resolve_backend(self.model_path, backend)
        if chosen == "openvino":
            self._ov = OpenVINOModel(self.model_path, device=device, threads=intra_op_threads)
            self.info = self._ov.info
            self.backend = "openvino"
            self.providers = self._ov.providers
            self._fixed_batch = None
            return
        if chosen == "tensorrt":
            self._trt = TensorRTRunner(self.model_path)
            self.info: EmbeddingModelInfo = self._trt.info
            self.backend = "tensorrt"
            self.providers = ["TensorRT (engine)"]
            self._fixed_batch: int | None = None
            return
        self._session = create_session(
            self.model_path,
            providers=providers,
            intra_op_threads=intra_op_threads,
            graph_optimization=graph_optimization,
        )
        self.info = read_model_info(self.model_path, session=self._session)
        self.backend = "onnxruntime"
        self.providers = list(self._session.get_providers())
        # read_model_info checked the graph's input and output against the metadata
        inputs = {i.name: i for i in self._session.get_inputs()}
        first_dim = inputs[self.info.input_name].shape[0]
        self._fixed_batch = first_dim if isinstance(first_dim, int) and first_dim > 0 else None

    @property
    def dim(self) -> int:
        return self.info.embedding_dim

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self._ov is not None:
            out = self._ov.run(batch)
        elif self._trt is not None:
            step = self._trt.max_batch
            parts = [self._trt.run(batch[i : i + step]) for i in range(0, len(batch), step)]
            out = np.concatenate(parts) if parts else np.empty((0, self.dim), np.float32)
        elif self._fixed_batch is not None and self._fixed_batch != len(batch):
            out = np.concatenate(
                [
                    self._run_fixed(batch[i : i + self._fixed_batch])
                    for i in range(0, len(batch), self._fixed_batch)
                ]
            )
        else:
            out = self._session.run([self.info.output_name], {self.info.input_name: batch})[0]
        out = np.asarray(out, dtype=np.float32).reshape(len(batch), -1)
        if out.shape[1] != self.dim:
            raise KdasError(
                f"{self.model_path} produced {out.shape[1]}-d embeddings but its metadata says "
                f"{self.dim}: re-export the model"
            )
        return out

    def _run_fixed(self, part: np.ndarray) -> np.ndarray:
        """A graph exported with a static batch: pad the last chunk, drop the padding after."""
        size = self._fixed_batch or len(part)
        padded = np.zeros((size, *part.shape[1:]), dtype=np.float32)
        padded[: len(part)] = part
        out = self._session.run([self.info.output_name], {self.info.input_name: padded})[0]
        return np.asarray(out)[: len(part)]

    def embed_batch(self, batch: np.ndarray) -> np.ndarray:
        """Embed already-preprocessed NCHW float32 input."""
        expected = (3, self.info.input_height, self.info.input_width)
        if batch.ndim != 4 or tuple(batch.shape[1:]) != expected:
            raise KdasError(
                f"input batch has shape {batch.shape}, the model expects (N, *{expected})"
            )
        if len(batch) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        # re-normalise even when the graph already did: fp16/int8 graphs drift from unit norm
        return l2_normalize(self._run(np.ascontiguousarray(batch, dtype=np.float32)))

    def embed_images(
        self,
        images: Sequence[ImageSource],
        batch_size: int = DEFAULT_BATCH_SIZE,
        names: Sequence[str] | None = None,
        progress: ProgressCallback | None = None,
    ) -> np.ndarray:
        """Embed paths, encoded bytes or PIL images -> (N, D) float32, unit rows.

        The next batch is decoded in a helper thread while the current one runs (PIL and
        onnxruntime both release the GIL), so decoding hides behind inference.
        """
        if batch_size < 1:
            raise KdasError(f"batch_size must be >= 1, got {batch_size}")
        total = len(images)
        out = np.empty((total, self.dim), dtype=np.float32)
        if total == 0:
            return out
        starts = list(range(0, total, batch_size))

        def load(start: int) -> np.ndarray:
            stop = min(start + batch_size, total)
            part_names = names[start:stop] if names is not None else None
            return preprocess_batch(images[start:stop], self.info, part_names)

        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kdas-preprocess") as pool:
            pending = pool.submit(load, starts[0])
            for i, start in enumerate(starts):
                batch = pending.result()
                if i + 1 < len(starts):
                    pending = pool.submit(load, starts[i + 1])
                out[start : start + len(batch)] = self.embed_batch(batch)
                if progress is not None:
                    progress(start + len(batch), total)
        return out
