"""The HTTP retrieval service: FastAPI + uvicorn around one GalleryIndex and its model.

`GalleryService` holds the state and the rules (limits, auth, persistence) with no web
framework in it; `create_app` maps it onto routes. FastAPI is imported only inside
`create_app`/`serve`, so the runtime imports without the `serve` extra.

Gallery changes need `Authorization: Bearer <token>` where the token is the value of
KDAS_API_TOKEN when the service started; without that variable the gallery is read-only.
Every change is saved (atomic folder swap) before the request returns.
"""

import hashlib
import hmac
import io
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from kdas import __version__
from kdas.errors import KdasError
from kdas.images import read_image
from kdas.runtime.embedder import Embedder, EmbedderChoice
from kdas.runtime.index import DEFAULT_K, GalleryIndex, UnknownIds
from kdas.runtime.metadata import GalleryRecord
from kdas.runtime.preprocess import preprocess_image
from kdas.utils.atomic import atomic_write_bytes

TOKEN_ENV = "KDAS_API_TOKEN"
_FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "BMP": ".bmp", "WEBP": ".webp", "GIF": ".gif"}


class RequestError(KdasError):
    """A request the service refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class ServiceConfig:
    """Every setting of the service, and the only place their defaults are written
    (`kdas serve` leaves an option it was not given to these)."""

    max_upload_mb: float = 10.0  # per image
    max_batch: int = 16  # images per request
    max_k: int = 100
    thumbnail_height: int = 128
    uploads_dir: Path | None = None  # where added images go; default INDEX.uploads beside it
    token: str | None = None  # normally read from KDAS_API_TOKEN by `load_service`
    host: str = "127.0.0.1"  # loopback: exposing the service is a deliberate choice
    port: int = 8000
    log_level: str = "info"  # uvicorn's

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)

    def max_request_bytes(self) -> int:
        """Content-Length bound for a multipart request: every image at its limit + form."""
        return self.max_batch * self.max_upload_bytes + 256 * 1024


@dataclass
class Upload:
    name: str
    data: bytes  # the image, or (an oversized one from a request) its first limit + 1 bytes
    size: int | None = None  # the whole upload's bytes; None: not known beyond len(data)


def upload_size_text(upload: Upload, limit_mb: float) -> str:
    """How big an oversized upload is: its real size, or "more than" the limit where only the
    first bytes were read. Never the number of bytes read presented as the size."""
    if upload.size is None:
        return f"more than {limit_mb:g} MB"
    megabytes = upload.size / 2**20
    if round(megabytes, 1) > limit_mb:
        return f"{megabytes:.1f} MB"
    return f"{upload.size:,} bytes"  # just over the limit: one decimal would read as the limit


class GalleryService:
    def __init__(self, index: GalleryIndex, embedder: Embedder, config: ServiceConfig) -> None:
        if embedder.info.weights_sha256 != index.info.weights_sha256:
            raise KdasError(
                "the service's model is not the model that built the index: serve the index "
                "with its own model (the model.onnx inside the index folder)"
            )
        if index.path is None:
            raise KdasError("the service needs a saved index (GalleryIndex.save) to persist to")
        self.index = index
        self.embedder = embedder
        self.config = config
        self.started = time.time()
        self._mutation_lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self.uploads_dir = config.uploads_dir or index.path.with_name(index.path.name + ".uploads")

    # --- bookkeeping ------------------------------------------------------------------------
    def count_request(self, route: str, status: int) -> None:
        with self._counts_lock:
            self._counts[route] += 1
            self._counts["total"] += 1
            if status >= 400:
                self._counts["errors"] += 1

    def stats(self) -> dict[str, Any]:
        info = self.embedder.info
        with self._counts_lock:
            counts = dict(self._counts)
        return {
            "count": len(self.index),
            "index": self.index.stats(),
            "model": {
                "kind": info.model_kind,
                "weights_sha256": info.weights_sha256,
                "embedding_dim": info.embedding_dim,
                "input_size": [info.input_height, info.input_width],
                "precision": info.precision,
                "backend": self.embedder.backend,
                "providers": self.embedder.providers,
            },
            "uptime_seconds": round(time.time() - self.started, 3),
            "requests": counts,
            "mutations_enabled": self.config.token is not None,
            "limits": {
                "max_upload_mb": self.config.max_upload_mb,
                "max_batch": self.config.max_batch,
                "max_k": self.config.max_k,
            },
            "kdas_version": __version__,
        }

    # --- checks -----------------------------------------------------------------------------
    def authorize(self, header: str | None) -> None:
        """403 when mutations are off, 401 for a missing or wrong bearer token."""
        token = self.config.token
        if token is None:
            raise RequestError(
                403,
                f"gallery changes are disabled: start the service with {TOKEN_ENV} set "
                "and send it as 'Authorization: Bearer <token>'",
            )
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer" or not given:
            raise RequestError(401, "missing bearer token: send 'Authorization: Bearer <token>'")
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            raise RequestError(401, "wrong bearer token")

    def check_uploads(self, uploads: list[Upload]) -> None:
        if not uploads:
            raise RequestError(400, "no image uploaded: send one or more files in 'images'")
        if len(uploads) > self.config.max_batch:
            raise RequestError(
                413, f"{len(uploads)} images in one request; the limit is {self.config.max_batch}"
            )
        limit = self.config.max_upload_mb
        for upload in uploads:
            if max(len(upload.data), upload.size or 0) > self.config.max_upload_bytes:
                raise RequestError(
                    413,
                    f"image {upload.name!r} is {upload_size_text(upload, limit)}; the limit is "
                    f"{limit:g} MB per image",
                )

    def _per_image(self, values: list[int] | None, n: int, name: str) -> list[int] | None:
        if not values:
            return None
        if len(values) == 1:
            return values * n
        if len(values) != n:
            raise RequestError(400, f"{len(values)} values of {name!r} for {n} images")
        return values

    def _decode(self, uploads: list[Upload]) -> tuple[list[Image.Image], np.ndarray]:
        images, batch = [], []
        for upload in uploads:
            try:
                image = read_image(upload.data, name=f"upload {upload.name!r}")
            except KdasError as exc:
                raise RequestError(400, str(exc)) from None
            images.append(image)
            batch.append(preprocess_image(image, self.embedder.info))
        return images, np.stack(batch)

    # --- operations -------------------------------------------------------------------------
    def search(
        self,
        uploads: list[Upload],
        k: int = DEFAULT_K,
        exclude_same_camera: bool = False,
        camids: list[int] | None = None,
        rerank: bool = False,
    ) -> dict[str, Any]:
        t0 = time.perf_counter()
        self.check_uploads(uploads)
        if not 1 <= k <= self.config.max_k:
            raise RequestError(400, f"k must be between 1 and {self.config.max_k}, got {k}")
        cams = self._per_image(camids, len(uploads), "camid")
        if exclude_same_camera and cams is None:
            raise RequestError(400, "exclude_same_camera needs the query's 'camid' (0-based)")
        _, batch = self._decode(uploads)
        t1 = time.perf_counter()
        embeddings = self.embedder.embed_batch(batch)
        t2 = time.perf_counter()
        hits = self.index.search(
            embeddings, k, query_camids=cams, exclude_same_camera=exclude_same_camera,
            rerank=rerank,
        )  # fmt: skip
        t3 = time.perf_counter()
        return {
            "results": [
                {"image": u.name, "hits": [h.to_dict() for h in row]}
                for u, row in zip(uploads, hits, strict=True)
            ],
            "timings_ms": {
                "decode": round((t1 - t0) * 1e3, 3),
                "embed": round((t2 - t1) * 1e3, 3),
                "search": round((t3 - t2) * 1e3, 3),
                "total": round((t3 - t0) * 1e3, 3),
            },
        }

    def _store_upload(self, upload: Upload, image_format: str | None) -> str:
        """Keep the uploaded bytes (content-addressed) so thumbnails and re-builds find them."""
        digest = hashlib.sha256(upload.data).hexdigest()
        suffix = _FORMAT_SUFFIX.get(image_format or "", ".img")
        path = self.uploads_dir / f"{digest}{suffix}"
        if not path.exists():
            atomic_write_bytes(path, upload.data)
        return str(path.resolve())

    def add(self, uploads: list[Upload], pids: list[int], camids: list[int]) -> dict[str, Any]:
        self.check_uploads(uploads)
        pid_list = self._per_image(pids, len(uploads), "pid")
        cam_list = self._per_image(camids, len(uploads), "camid")
        if pid_list is None or cam_list is None:
            raise RequestError(400, "adding images needs 'pid' and 'camid' (one, or one per image)")
        if any(c < 0 for c in cam_list):
            raise RequestError(400, "camid is 0-based and must be >= 0")
        _, batch = self._decode(uploads)
        formats = [_image_format(u.data) for u in uploads]
        embeddings = self.embedder.embed_batch(batch)
        with self._mutation_lock:
            paths = [self._store_upload(u, f) for u, f in zip(uploads, formats, strict=True)]
            records = [
                GalleryRecord(p, int(pid), int(cam))
                for p, pid, cam in zip(paths, pid_list, cam_list, strict=True)
            ]
            ids = self.index.add(embeddings, records)
            try:
                self.index.save()
            except Exception as exc:  # keep memory and disk in step: undo the add
                self.index.remove(ids)
                raise RequestError(
                    500, f"could not save the index ({exc}); the images were not added"
                ) from None
        return {"ids": [int(i) for i in ids], "count": len(self.index)}

    def remove(self, gallery_id: int) -> dict[str, Any]:
        with self._mutation_lock:
            record = self.index.get(gallery_id)
            try:
                self.index.remove([gallery_id])
            except UnknownIds as exc:
                raise RequestError(404, str(exc)) from None
            try:
                self.index.save()
            except Exception as exc:  # the saved folder still holds the image: reload it
                self.index = GalleryIndex.open(self.index.path, expected_model=self.embedder.info)
                raise RequestError(
                    500, f"could not save the index ({exc}); the image was not removed"
                ) from None
            if record is not None:
                self._forget_upload(record.path)
        return {"removed": gallery_id, "count": len(self.index)}

    def _forget_upload(self, path: str) -> None:
        """Delete an uploaded file once no gallery entry refers to it any more."""
        file = Path(path)
        if file.parent.resolve() != self.uploads_dir.resolve():
            return
        _, records = self.index.records()
        if all(r.path != path for r in records):
            file.unlink(missing_ok=True)

    def thumbnail(self, gallery_id: int) -> bytes:
        record = self.index.get(gallery_id)
        if record is None:
            raise RequestError(404, f"no gallery image with id {gallery_id} in this index")
        try:
            image = read_image(record.path)
        except KdasError:
            raise RequestError(404, f"the image file of gallery id {gallery_id} is gone") from None
        height = self.config.thumbnail_height
        width = max(1, round(image.width * height / image.height))
        image = image.resize((width, height), Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=90)
        return buffer.getvalue()


def _image_format(data: bytes) -> str | None:
    with Image.open(io.BytesIO(data)) as image:  # header only: already decoded once
        return image.format


def load_service(
    index_dir: str | os.PathLike[str],
    config: ServiceConfig | None = None,
    model_path: str | os.PathLike[str] | None = None,
    choice: EmbedderChoice | None = None,
) -> GalleryService:
    """Open an index with its model; the bearer token comes from KDAS_API_TOKEN now."""
    from kdas.runtime.pipeline import open_with_embedder

    config = config or ServiceConfig()
    if config.token is None:
        config.token = os.environ.get(TOKEN_ENV) or None
    if config.max_batch < 1 or config.max_upload_mb <= 0 or config.max_k < 1:
        raise KdasError("service limits must be positive (max batch, max upload MB, max k)")
    index, embedder = open_with_embedder(index_dir, model_path=model_path, choice=choice)
    return GalleryService(index, embedder, config)


def _page() -> str:
    from importlib.resources import files

    return (files("kdas.runtime") / "static" / "index.html").read_text(encoding="utf-8")


def _require_fastapi() -> None:
    try:
        import fastapi  # noqa: F401
    except ImportError:
        from kdas.errors import BackendUnavailable

        raise BackendUnavailable(
            "the HTTP service needs FastAPI: install it with `pip install 'kdas[serve]'`"
        ) from None


def create_app(service: GalleryService) -> Any:
    """The FastAPI application (OpenAPI at /openapi.json, docs at /docs)."""
    _require_fastapi()
    from fastapi import FastAPI

    app = FastAPI(
        title="kdas retrieval service",
        version=__version__,
        description="Person re-identification search over a kdas gallery index.",
    )
    _add_error_handlers(app)
    _add_limits_and_counts(app, service)
    _add_read_routes(app, service)
    _add_upload_routes(app, service)
    return app


def _add_error_handlers(app: Any) -> None:
    from fastapi import Request
    from fastapi.responses import JSONResponse

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=headers)

    @app.exception_handler(KdasError)
    async def _kdas_error(_: Request, exc: KdasError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=400)


_UPLOAD_ROUTES = {"/v1/search", "/v1/gallery"}


def _route_name(path: str) -> str:
    """The route a request counts under: gallery ids folded into `{id}`."""
    if path.startswith("/v1/gallery/") and path.endswith("/image"):
        return "/v1/gallery/{id}/image"
    if path.startswith("/v1/gallery/"):
        return "/v1/gallery/{id}"
    return path


def _add_limits_and_counts(app: Any, service: GalleryService) -> None:
    """Refuse an oversized upload before reading it (413), and count every request."""
    from fastapi import Request
    from fastapi.responses import JSONResponse

    @app.middleware("http")
    async def _limits_and_counts(request: Request, call_next: Any) -> Any:
        route = request.url.path
        if request.method == "POST" and route in _UPLOAD_ROUTES:
            length = request.headers.get("content-length", "")
            size = int(length) if length.isdigit() else 0
            if size > service.config.max_request_bytes():
                service.count_request(f"POST {route}", 413)
                limit = f"{service.config.max_batch} images of {service.config.max_upload_mb:g} MB"
                return JSONResponse(
                    {"detail": f"request of {size / 2**20:.1f} MB is too large (limit {limit})"},
                    status_code=413,
                )
        response = await call_next(request)
        service.count_request(f"{request.method} {_route_name(route)}", response.status_code)
        return response


def _add_read_routes(app: Any, service: GalleryService) -> None:
    """The page, health, stats and thumbnails: no token needed."""
    from fastapi.responses import HTMLResponse, Response

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> HTMLResponse:
        return HTMLResponse(_page())

    @app.get("/healthz", summary="Liveness check")
    def healthz() -> dict[str, Any]:
        return {"status": "ok", "count": len(service.index)}

    @app.get("/v1/stats", summary="Gallery size, model, index, uptime and request counts")
    def stats() -> dict[str, Any]:
        return service.stats()

    @app.get(
        "/v1/gallery/{gallery_id}/image",
        summary="JPEG thumbnail of a gallery image",
        response_class=Response,
        responses={200: {"content": {"image/jpeg": {}}}},
    )
    def thumbnail(gallery_id: int) -> Response:
        return Response(
            service.thumbnail(gallery_id),
            media_type="image/jpeg",
            headers={"Cache-Control": "max-age=300"},
        )


def _spooled_size(file: Any) -> int | None:
    """The whole size of a multipart file (Starlette spools it before the route runs)."""
    if getattr(file, "size", None) is not None:
        return int(file.size)
    try:
        return int(file.file.seek(0, os.SEEK_END))
    except (AttributeError, OSError, ValueError):
        return None


def _add_upload_routes(app: Any, service: GalleryService) -> None:
    """Search (open) and gallery changes (bearer token)."""
    from typing import Annotated

    from fastapi import Depends, File, Form, UploadFile
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from starlette.concurrency import run_in_threadpool

    bearer = HTTPBearer(auto_error=False, description=f"the value of {TOKEN_ENV}")

    def authorized(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> None:
        header = f"{credentials.scheme} {credentials.credentials}" if credentials else None
        service.authorize(header)

    async def read_uploads(files: list[UploadFile]) -> list[Upload]:
        limit = service.config.max_upload_bytes
        uploads = []
        for i, file in enumerate(files):
            data = await file.read(limit + 1)  # one byte over the limit is enough to refuse it
            size = len(data) if len(data) <= limit else _spooled_size(file)
            uploads.append(Upload(file.filename or f"image {i + 1}", data, size))
        return uploads

    @app.post("/v1/search", summary="Top-k gallery hits for one or more query images")
    async def search(
        images: Annotated[list[UploadFile], File(description="query images (JPEG/PNG)")],
        k: Annotated[int, Form()] = DEFAULT_K,
        exclude_same_camera: Annotated[bool, Form()] = False,
        camid: Annotated[list[int] | None, Form(description="0-based query camera(s)")] = None,
        rerank: Annotated[bool, Form()] = False,
    ) -> dict[str, Any]:
        uploads = await read_uploads(images)
        return await run_in_threadpool(
            service.search, uploads, k, exclude_same_camera, camid, rerank
        )

    @app.post(
        "/v1/gallery",
        summary="Add images to the gallery (bearer token)",
        dependencies=[Depends(authorized)],
    )
    async def add(
        images: Annotated[list[UploadFile], File(description="gallery images")],
        pid: Annotated[list[int], Form(description="identity: one, or one per image")],
        camid: Annotated[list[int], Form(description="0-based camera: one, or one per image")],
    ) -> dict[str, Any]:
        uploads = await read_uploads(images)
        return await run_in_threadpool(service.add, uploads, pid, camid)

    @app.delete(
        "/v1/gallery/{gallery_id}",
        summary="Remove one gallery image (bearer token)",
        dependencies=[Depends(authorized)],
    )
    def remove(gallery_id: int) -> dict[str, Any]:
        return service.remove(gallery_id)


def serve(
    index_dir: str | os.PathLike[str],
    host: str | None = None,
    port: int | None = None,
    config: ServiceConfig | None = None,
    model_path: str | os.PathLike[str] | None = None,
    log_level: str | None = None,
    choice: EmbedderChoice | None = None,
) -> None:
    """Run the service until interrupted; `host`, `port`, `log_level` override the config's."""
    try:
        import uvicorn
    except ImportError:
        from kdas.errors import BackendUnavailable

        raise BackendUnavailable(
            "the HTTP service needs uvicorn: install it with `pip install 'kdas[serve]'`"
        ) from None
    config = config or ServiceConfig()
    service = load_service(index_dir, config, model_path=model_path, choice=choice)
    uvicorn.run(
        create_app(service),
        host=host if host is not None else config.host,
        port=port if port is not None else config.port,
        log_level=log_level if log_level is not None else config.log_level,
    )
