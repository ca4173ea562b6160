"""The bad-input catalogue of the runtime: `kdas index ...`, `kdas parity` with a bad export, and
the HTTP service.

Every CLI case must fail cleanly (`bad_inputs.expect_clean_failure`: non-zero exit, one `error:`
line, no traceback) and leave every file of its workspace byte-identical, with no new file beside
them; every HTTP case must be answered 4xx with a JSON `detail`. Where the message has a word the
user needs (the file, the option, what to do), the case checks it.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
from bad_inputs import expect_clean_failure, snapshot

pytest.importorskip("onnxruntime")


# --- the workspace every CLI case starts from ----------------------------------------------------
@pytest.fixture(scope="module")
def originals(tmp_path_factory: pytest.TempPathFactory, tiny_market: Path) -> dict[str, Path]:
    """A tiny model, an index built with it, and a folder of Market-named gallery images."""
    from runtime_model import export_tiny_model

    from kdas.data.layouts import load_dataset
    from kdas.runtime.pipeline import build_index

    root = tmp_path_factory.mktemp("bad_inputs_runtime")
    model, _ = export_tiny_model(root / "tiny.onnx")
    splits = load_dataset(tiny_market, "market1501")
    gallery = root / "gallery"
    gallery.mkdir()
    for record in splits.gallery[:6]:
        shutil.copy(record.path, gallery / Path(record.path).name)
    build_index(model, splits.gallery, root / "index")
    return {"model": model, "index": root / "index", "gallery": gallery,
            "query": Path(splits.query[0].path), "market": tiny_market}  # fmt: skip


@dataclass
class Workspace:
    """Fresh copies of the originals in `root`; every case guards all of `root` (and the shared
    data set it reads, `market`)."""

    root: Path
    model: Path
    index: Path
    gallery: Path
    query: Path
    market: Path

    def file(self, name: str, data: bytes | str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            data = data.encode()
        path.write_bytes(data)
        return path

    def onnx_variant(self, name: str, edit: Callable[..., None]) -> Path:
        """The tiny model with its ONNX proto edited by `edit(model)`."""
        import onnx

        model = onnx.load(str(self.model))
        edit(model)
        path = self.root / name
        onnx.save(model, str(path))
        return path

    def onnx_with_input(self, name: str, dims: list[int | str]) -> Path:
        """A one-op graph (Flatten) whose input has `dims`, with the tiny model's metadata."""
        import onnx
        from onnx import TensorProto, helper

        reference = onnx.load(str(self.model))
        graph = helper.make_graph(
            [helper.make_node("Flatten", ["images"], ["embeddings"], axis=1)],
            "odd_input",
            [helper.make_tensor_value_info("images", TensorProto.FLOAT, dims)],
            [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [dims[0], None])],
        )
        model = helper.make_model(graph, opset_imports=list(reference.opset_import))
        model.ir_version = reference.ir_version
        model.metadata_props.extend(reference.metadata_props)
        path = self.root / name
        onnx.save(model, str(path))
        return path

    def mismatched_onnx(self) -> Path:
        """The graph takes 32x16 images, its metadata claims 64x32."""

        def edit(model) -> None:
            for prop in model.metadata_props:
                if prop.key == "kdas.input_height":
                    prop.value = "64"
                if prop.key == "kdas.input_width":
                    prop.value = "32"

        return self.onnx_variant("mismatch.onnx", edit)

    def edit_manifest(self, change: Callable[[dict], None]) -> None:
        path = self.index / "manifest.json"
        data = json.loads(path.read_text())
        change(data)
        path.write_text(json.dumps(data))


@pytest.fixture
def ws(originals: dict[str, Path], tmp_path: Path) -> Workspace:
    shutil.copy(originals["model"], tmp_path / "tiny.onnx")
    shutil.copytree(originals["index"], tmp_path / "index")
    shutil.copytree(originals["gallery"], tmp_path / "gallery")
    shutil.copy(originals["query"], tmp_path / originals["query"].name)
    return Workspace(
        tmp_path, tmp_path / "tiny.onnx", tmp_path / "index", tmp_path / "gallery",
        tmp_path / originals["query"].name, originals["market"],
    )  # fmt: skip


@dataclass
class Case:
    argv: list[str]
    expect: str = ""  # a word the one-line message must contain


CASES: dict[str, Callable[[Workspace], Case]] = {}


def case(name: str) -> Callable:
    def register(make: Callable[[Workspace], Case]) -> Callable[[Workspace], Case]:
        CASES[name] = make
        return make

    return register


def build(ws: Workspace, model: Path, *extra: str, gallery: Path | None = None) -> list[str]:
    out = str(ws.root / "new_index")
    return ["index", "build", str(model), str(gallery or ws.gallery), "--out", out, *extra]


# --- kdas index build: the model ---------------------------------------------------------------
@case("build-model-missing")
def _(ws: Workspace) -> Case:
    return Case(build(ws, ws.root / "missing.onnx"), "does not exist")


@case("build-model-not-onnx")
def _(ws: Workspace) -> Case:
    return Case(build(ws, ws.file("notes.onnx", "just some text\n")), "cannot load ONNX model")


@case("build-model-truncated")
def _(ws: Workspace) -> Case:
    cut = ws.file("cut.onnx", ws.model.read_bytes()[: ws.model.stat().st_size // 2])
    return Case(build(ws, cut), "cut.onnx")


@case("build-model-empty")
def _(ws: Workspace) -> Case:
    return Case(build(ws, ws.file("empty.onnx", b"")), "empty.onnx")


@case("build-model-input-size-disagrees-with-metadata")
def _(ws: Workspace) -> Case:
    return Case(build(ws, ws.mismatched_onnx()), "kdas export")


@case("build-model-input-not-4d")
def _(ws: Workspace) -> Case:
    return Case(build(ws, ws.onnx_with_input("flat.onnx", ["batch", 32, 16])), "(N, 3, H, W)")


@case("build-model-input-one-channel")
def _(ws: Workspace) -> Case:
    one = ws.onnx_with_input("grey.onnx", ["batch", 1, 32, 16])
    return Case(build(ws, one), "(?, 1, 32, 16)")


@case("build-model-without-kdas-metadata")
def _(ws: Workspace) -> Case:
    bare = ws.onnx_variant("bare.onnx", lambda m: m.metadata_props.__delitem__(slice(None)))
    return Case(build(ws, bare), "kdas export")


@case("build-model-names-another-input")
def _(ws: Workspace) -> Case:
    def rename(model) -> None:
        for prop in model.metadata_props:
            if prop.key == "kdas.input_name":
                prop.value = json.dumps("pixels")

    return Case(build(ws, ws.onnx_variant("renamed.onnx", rename)), "pixels")


@case("build-openvino-ir-input-size-disagrees-with-metadata")
def _(ws: Workspace) -> Case:
    pytest.importorskip("openvino", reason="the [openvino] extra is not installed")
    import openvino as ov

    from kdas.runtime.openvino_model import save_ir
    from kdas.runtime.session import read_model_info

    claims = replace(read_model_info(ws.model), input_height=64, input_width=32)
    ir = save_ir(ov.convert_model(str(ws.model)), ws.root / "ir" / "mismatch.xml", claims)
    return Case(build(ws, ir), "(N, 3, 64, 32)")


@case("build-backend-does-not-fit-the-file")
def _(ws: Workspace) -> Case:
    return Case(build(ws, ws.model, "--backend", "openvino"), "openvino")


# --- kdas index build: the output and the gallery -------------------------------------------------
@case("build-out-is-an-existing-file")
def _(ws: Workspace) -> Case:
    target = ws.file("precious.txt", "do not replace me\n")
    argv = ["index", "build", str(ws.model), str(ws.gallery), "--out", str(target)]
    return Case(argv, "is a file")


@case("build-out-is-a-folder-that-is-not-an-index")
def _(ws: Workspace) -> Case:
    argv = ["index", "build", str(ws.model), str(ws.gallery), "--out", str(ws.gallery)]
    return Case(argv, "not a kdas index")


@case("build-out-below-a-file")
def _(ws: Workspace) -> Case:
    target = ws.file("plain.txt", "x") / "index"
    argv = ["index", "build", str(ws.model), str(ws.gallery), "--out", str(target)]
    return Case(argv, "plain.txt is a file")


@case("build-gallery-missing")
def _(ws: Workspace) -> Case:
    return Case(build(ws, ws.model, gallery=ws.root / "no_such_folder"), "does not exist")


@case("build-gallery-empty")
def _(ws: Workspace) -> Case:
    empty = ws.root / "empty_gallery"
    empty.mkdir()
    return Case(build(ws, ws.model, gallery=empty), "no images")


@case("build-gallery-with-a-corrupt-image")
def _(ws: Workspace) -> Case:
    ws.file("gallery/0099_c1s1_000001_00.jpg", b"\xff\xd8\xff\xe0 this is no jpeg")
    return Case(build(ws, ws.model), "0099_c1s1_000001_00.jpg")


@case("build-data-root-with-an-unknown-layout")
def _(ws: Workspace) -> Case:
    return Case(build(ws, ws.model, "--layout", "nope", gallery=ws.market), "nope")


@case("build-unknown-index-type")
def _(ws: Workspace) -> Case:
    return Case(build(ws, ws.model, "--type", "annoy"), "annoy")


@case("build-batch-size-zero")
def _(ws: Workspace) -> Case:
    return Case(build(ws, ws.model, "--batch-size", "0"), "batch")


@case("build-nlist-zero")
def _(ws: Workspace) -> Case:
    return Case(build(ws, ws.model, "--type", "ivf", "--nlist", "0"), "nlist")


# --- kdas index add/query/eval/info/remove: the index folder --------------------------------------
@case("add-index-missing")
def _(ws: Workspace) -> Case:
    return Case(["index", "add", str(ws.root / "nowhere"), str(ws.query)], "does not exist")


@case("add-image-missing")
def _(ws: Workspace) -> Case:
    return Case(["index", "add", str(ws.index), str(ws.root / "0001_c1_gone.jpg")], "not found")


@case("add-image-corrupt")
def _(ws: Workspace) -> Case:
    bad = ws.file("0005_c2_bad.jpg", b"GIF89a but then nothing")
    return Case(["index", "add", str(ws.index), str(bad)], "0005_c2_bad.jpg")


@case("add-image-without-identity")
def _(ws: Workspace) -> Case:
    loose = ws.file("holiday.jpg", ws.query.read_bytes())
    return Case(["index", "add", str(ws.index), str(loose)], "--pid")


@case("add-index-model-file-gone")
def _(ws: Workspace) -> Case:
    (ws.index / "model.onnx").unlink()
    return Case(["index", "add", str(ws.index), str(ws.query)], "model.onnx")


@case("add-index-next-id-below-its-ids")
def _(ws: Workspace) -> Case:
    ws.edit_manifest(lambda m: m.update(next_id=1))
    return Case(["index", "add", str(ws.index), str(ws.query)], "manifest")


@case("query-index-missing")
def _(ws: Workspace) -> Case:
    return Case(["index", "query", str(ws.root / "nowhere"), str(ws.query)], "does not exist")


@case("query-index-is-a-file")
def _(ws: Workspace) -> Case:
    return Case(["index", "query", str(ws.model), str(ws.query)], "is a file")


@case("query-folder-is-not-an-index")
def _(ws: Workspace) -> Case:
    return Case(["index", "query", str(ws.gallery), str(ws.query)], "manifest.json")


@case("query-k-zero")
def _(ws: Workspace) -> Case:
    return Case(["index", "query", str(ws.index), str(ws.query), "--k", "0"], "k must be")


@case("query-k-negative")
def _(ws: Workspace) -> Case:
    return Case(["index", "query", str(ws.index), str(ws.query), "--k", "-5"], "k must be")


@case("query-k-not-a-number")
def _(ws: Workspace) -> Case:
    return Case(["index", "query", str(ws.index), str(ws.query), "--k", "ten"], "--k")


@case("query-image-missing")
def _(ws: Workspace) -> Case:
    return Case(["index", "query", str(ws.index), str(ws.root / "gone.jpg")], "gone.jpg")


@case("query-image-corrupt")
def _(ws: Workspace) -> Case:
    cut = ws.file("0001_c1_cut.jpg", ws.query.read_bytes()[:100])
    return Case(["index", "query", str(ws.index), str(cut)], "0001_c1_cut.jpg")


@case("query-image-is-a-folder")
def _(ws: Workspace) -> Case:
    return Case(["index", "query", str(ws.index), str(ws.gallery)], "gallery")


@case("query-exclude-camera-without-camera")
def _(ws: Workspace) -> Case:
    loose = ws.file("holiday.jpg", ws.query.read_bytes())
    return Case(["index", "query", str(ws.index), str(loose), "--exclude-same-camera"], "--camid")


@case("query-manifest-truncated")
def _(ws: Workspace) -> Case:
    manifest = ws.index / "manifest.json"
    manifest.write_bytes(manifest.read_bytes()[:40])
    return Case(["index", "query", str(ws.index), str(ws.query)], "not valid JSON")


@case("query-manifest-not-a-manifest")
def _(ws: Workspace) -> Case:
    (ws.index / "manifest.json").write_text("[1, 2, 3]")
    return Case(["index", "query", str(ws.index), str(ws.query)], "not a kdas index manifest")


@case("query-manifest-count-of-the-wrong-type")
def _(ws: Workspace) -> Case:
    ws.edit_manifest(lambda m: m.update(count="many"))
    return Case(["index", "query", str(ws.index), str(ws.query)], "count")


@case("query-manifest-unknown-index-type")
def _(ws: Workspace) -> Case:
    ws.edit_manifest(lambda m: m.update(index_type="annoy"))
    return Case(["index", "query", str(ws.index), str(ws.query)], "annoy")


@case("query-manifest-bad-index-params")
def _(ws: Workspace) -> Case:
    ws.edit_manifest(lambda m: m["index_params"].update(nprobe="lots"))
    return Case(["index", "query", str(ws.index), str(ws.query)], "nprobe")


@case("query-faiss-file-truncated")
def _(ws: Workspace) -> Case:
    faiss_file = ws.index / "index.faiss"
    faiss_file.write_bytes(faiss_file.read_bytes()[:-64])
    return Case(["index", "query", str(ws.index), str(ws.query)], "index.faiss")


@case("query-faiss-file-flipped-byte")
def _(ws: Workspace) -> Case:
    faiss_file = ws.index / "index.faiss"
    data = bytearray(faiss_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    faiss_file.write_bytes(bytes(data))
    return Case(["index", "query", str(ws.index), str(ws.query)], "corrupt")


@case("query-faiss-file-missing")
def _(ws: Workspace) -> Case:
    (ws.index / "index.faiss").unlink()
    return Case(["index", "query", str(ws.index), str(ws.query)], "index.faiss")


@case("query-gallery-database-garbage")
def _(ws: Workspace) -> Case:
    db = ws.index / "gallery.sqlite"
    db.write_bytes(b"\0" * db.stat().st_size)
    return Case(["index", "query", str(ws.index), str(ws.query)], "gallery.sqlite")


@case("query-index-of-another-model")
def _(ws: Workspace) -> Case:
    def other_weights(manifest: dict) -> None:
        manifest["model"]["weights_sha256"] = "0" * 64

    ws.edit_manifest(other_weights)
    argv = ["index", "query", str(ws.index), str(ws.query)]
    return Case(argv, "rebuild")


@case("query-picture-below-a-file")
def _(ws: Workspace) -> Case:
    picture = ws.file("plain.txt", "x") / "hits.png"
    argv = ["index", "query", str(ws.index), str(ws.query), "--picture", str(picture)]
    return Case(argv, "plain.txt is a file")


@case("query-picture-is-a-folder")
def _(ws: Workspace) -> Case:
    argv = ["index", "query", str(ws.index), str(ws.query), "--picture", str(ws.gallery)]
    return Case(argv, "--picture")


@case("eval-data-missing")
def _(ws: Workspace) -> Case:
    return Case(["index", "eval", str(ws.index), "--data", str(ws.root / "no_data")], "no_data")


@case("eval-index-missing")
def _(ws: Workspace) -> Case:
    argv = ["index", "eval", str(ws.root / "nowhere"), "--data", str(ws.market)]
    return Case(argv, "does not exist")


@case("eval-out-is-a-folder")
def _(ws: Workspace) -> Case:
    argv = ["index", "eval", str(ws.index), "--data", str(ws.market), "--out", str(ws.gallery)]
    return Case(argv, "is a folder")


@case("eval-out-below-a-file")
def _(ws: Workspace) -> Case:
    out = ws.file("plain.txt", "x") / "metrics.json"
    argv = ["index", "eval", str(ws.index), "--data", str(ws.market), "--out", str(out)]
    return Case(argv, "plain.txt is a file")


@case("info-index-missing")
def _(ws: Workspace) -> Case:
    return Case(["index", "info", str(ws.root / "nowhere")], "does not exist")


@case("info-manifest-corrupt")
def _(ws: Workspace) -> Case:
    (ws.index / "manifest.json").write_bytes(b"\x00\xff{")
    return Case(["index", "info", str(ws.index)], "manifest.json")


@case("remove-unknown-id")
def _(ws: Workspace) -> Case:
    return Case(["index", "remove", str(ws.index), "999999"], "999999")


@case("compact-index-missing")
def _(ws: Workspace) -> Case:
    return Case(["index", "compact", str(ws.root / "nowhere")], "does not exist")


@case("serve-index-missing")
def _(ws: Workspace) -> Case:
    return Case(["serve", str(ws.root / "nowhere")], "does not exist")


@case("serve-limit-not-positive")
def _(ws: Workspace) -> Case:
    return Case(["serve", str(ws.index), "--max-batch", "0"], "must be positive")


@case("serve-model-of-other-input-size")
def _(ws: Workspace) -> Case:
    return Case(["serve", str(ws.index), "--model", str(ws.mismatched_onnx())], "kdas export")


@pytest.mark.parametrize("name", list(CASES))
def test_index_command_bad_input(name: str, ws: Workspace, capsys) -> None:
    bad = CASES[name](ws)
    failure = expect_clean_failure(bad.argv, guard=[ws.root, ws.market], capsys=capsys)
    assert bad.expect in failure.message, failure.message


# --- kdas parity with a bad export ---------------------------------------------------------------
@pytest.mark.parametrize("bad", ["mismatch", "not-onnx", "one-channel"])
def test_parity_with_a_bad_export(bad: str, ws: Workspace, tiny_teacher: Path, capsys) -> None:
    exported = {
        "mismatch": ws.mismatched_onnx,
        "not-onnx": lambda: ws.file("teacher.onnx", b"\x08\x07garbage"),
        "one-channel": lambda: ws.onnx_with_input("grey.onnx", ["batch", 1, 32, 16]),
    }[bad]()
    argv = ["parity", str(tiny_teacher), str(exported), "--data", str(ws.market)]
    failure = expect_clean_failure(argv, guard=[ws.root, tiny_teacher], capsys=capsys)
    assert exported.name in failure.message
    if bad == "mismatch":
        assert "(N, 3, 64, 32)" in failure.message and "(?, 3, 32, 16)" in failure.message


# --- the HTTP service ----------------------------------------------------------------------------
TOKEN = "bad-inputs-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
LIMIT_MB = 0.25  # per image: small, so an oversized upload is cheap to send


@pytest.fixture(scope="module")
def live(originals: dict[str, Path], tmp_path_factory: pytest.TempPathFactory):
    """The service over a copy of the index, through a real uvicorn (test_runtime_service's)."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from test_runtime_service import LiveServer

    from kdas.runtime.service import ServiceConfig, create_app, load_service

    index_dir = tmp_path_factory.mktemp("bad_http") / "index"
    shutil.copytree(originals["index"], index_dir)
    service = load_service(
        index_dir, ServiceConfig(token=TOKEN, max_batch=4, max_upload_mb=LIMIT_MB, max_k=20)
    )
    server = LiveServer(create_app(service))
    server.index_dir = index_dir
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client, index_dir, originals["query"].read_bytes()
    server.close()


def image(data: bytes, name: str = "q.jpg", kind: str = "image/jpeg") -> tuple:
    return ("images", (name, data, kind))


def search(client, files=None, **form):
    return client.post("/v1/search", files=files, data={k: str(v) for k, v in form.items()})


def raw_post(client, path: str, body: bytes, headers: dict[str, str]):
    """A request whose headers httpx would not send as given (a Content-Length that lies)."""
    import http.client

    import httpx

    url = client.base_url
    connection = http.client.HTTPConnection(url.host, url.port, timeout=30)
    try:
        connection.request("POST", path, body=body, headers=headers)
        answer = connection.getresponse()
        return httpx.Response(answer.status, content=answer.read())
    finally:
        connection.close()


def gallery_add(client, files, headers=AUTH, **form):
    return client.post("/v1/gallery", files=files, data=form, headers=headers)


HTTP_CASES: dict[str, tuple[Callable, int, str]] = {
    # name: (request(client, jpeg) -> response, status, a word of the detail)
    "search-not-an-image": (
        lambda c, j: search(c, [image(b"hello world", "notes.txt", "text/plain")]),
        400, "notes.txt",
    ),
    "search-empty-file": (lambda c, j: search(c, [image(b"", "empty.jpg")]), 400, "empty"),
    "search-truncated-jpeg": (
        lambda c, j: search(c, [image(j[:120], "cut.jpg")]), 400, "cut.jpg",
    ),
    "search-no-image-field": (lambda c, j: search(c, k=3), 422, "images"),
    "search-empty-body": (lambda c, j: c.post("/v1/search"), 422, "images"),
    "search-malformed-json-body": (
        lambda c, j: c.post(
            "/v1/search", content=b'{"k": 3, "images": [',
            headers={"content-type": "application/json"},
        ),
        422, "",
    ),
    "search-malformed-multipart": (
        lambda c, j: c.post(
            "/v1/search", content=b"--xyz\r\nnot a part",
            headers={"content-type": "multipart/form-data; boundary=xyz"},
        ),
        400, "",
    ),
    "search-k-zero": (lambda c, j: search(c, [image(j)], k=0), 400, "k must be"),
    "search-k-negative": (lambda c, j: search(c, [image(j)], k=-2), 400, "k must be"),
    "search-k-above-max": (lambda c, j: search(c, [image(j)], k=21), 400, "between 1 and 20"),
    "search-k-not-a-number": (lambda c, j: search(c, [image(j)], k="ten"), 422, "k"),
    "search-exclude-camera-without-camid": (
        lambda c, j: search(c, [image(j)], exclude_same_camera="true"), 400, "camid",
    ),
    "search-camids-do-not-match-images": (
        lambda c, j: c.post("/v1/search", files=[image(j)] * 2,
                            data={"camid": ["0", "1", "2"], "exclude_same_camera": "true"}),
        400, "camid",
    ),
    "search-too-many-images": (lambda c, j: search(c, [image(j)] * 5), 413, "limit is 4"),
    "search-oversized-image": (
        lambda c, j: search(c, [image(b"\x89PNG" + b"0" * 400_000, "big.png", "image/png")]),
        413, "big.png",
    ),
    "search-declared-length-too-large": (
        lambda c, j: raw_post(c, "/v1/search", b"--b\r\n", {
            "Content-Type": "multipart/form-data; boundary=b", "Content-Length": str(10**10)}),
        413, "too large",
    ),
    "add-without-token": (
        lambda c, j: gallery_add(c, [image(j)], headers={}, pid="1", camid="0"), 401, "bearer",
    ),
    "add-wrong-token": (
        lambda c, j: gallery_add(c, [image(j)], headers={"Authorization": "Bearer nope"},
                                 pid="1", camid="0"),
        401, "wrong bearer token",
    ),
    "add-without-pid": (lambda c, j: gallery_add(c, [image(j)], camid="0"), 422, "pid"),
    "add-pid-not-a-number": (
        lambda c, j: gallery_add(c, [image(j)], pid="alice", camid="0"), 422, "pid",
    ),
    "add-negative-camid": (
        lambda c, j: gallery_add(c, [image(j)], pid="1", camid="-1"), 400, "camid",
    ),
    "add-not-an-image": (
        lambda c, j: gallery_add(c, [image(b"%PDF-1.4", "doc.pdf")], pid="1", camid="0"),
        400, "doc.pdf",
    ),
    "delete-unknown-id": (lambda c, j: c.delete("/v1/gallery/999999", headers=AUTH), 404, "999999"),
    "delete-id-not-a-number": (lambda c, j: c.delete("/v1/gallery/abc", headers=AUTH), 422, ""),
    "thumbnail-unknown-id": (lambda c, j: c.get("/v1/gallery/424242/image"), 404, "424242"),
    "thumbnail-negative-id": (lambda c, j: c.get("/v1/gallery/-1/image"), 404, ""),
}  # fmt: skip


@pytest.mark.parametrize("name", list(HTTP_CASES))
def test_service_bad_request(name: str, live) -> None:
    client, index_dir, jpeg = live
    before = snapshot(index_dir)
    make, status, word = HTTP_CASES[name]
    response = make(client, jpeg)
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    assert word in (detail if isinstance(detail, str) else json.dumps(detail)), detail
    assert snapshot(index_dir) == before  # a refused request changes nothing on disk
    assert client.get("/healthz").status_code == 200  # and the service goes on serving


def test_oversized_upload_reports_its_real_size(live) -> None:
    """The body is read only up to the limit + 1 byte; the message still gives the real size."""
    client, _, _ = live
    big = b"\x89PNG" + b"0" * (3 * 2**20 // 4)  # 0.75 MB: three times the 0.25 MB limit
    response = search(client, [image(big, "big.png", "image/png")])
    assert response.status_code == 413
    detail = response.json()["detail"]
    assert "is 0.8 MB" in detail and f"limit is {LIMIT_MB:g} MB" in detail, detail


def test_upload_size_text_never_reports_the_bytes_read_as_the_size() -> None:
    from kdas.runtime.service import Upload, upload_size_text

    cut = Upload("a.png", b"0" * (10 * 2**20 + 1))  # read up to the limit, whole size unknown
    assert upload_size_text(cut, 10) == "more than 10 MB"
    assert upload_size_text(Upload("b.png", b"", size=30 * 2**20), 10) == "30.0 MB"
    just_over = Upload("c.png", b"", size=10 * 2**20 + 5)  # would round to the limit itself
    assert upload_size_text(just_over, 10) == f"{10 * 2**20 + 5:,} bytes"
