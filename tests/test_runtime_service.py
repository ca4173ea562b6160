"""The HTTP service through a real uvicorn on 127.0.0.1, and its page in headless Chromium."""

from __future__ import annotations

import io
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdas.runtime.index import GalleryIndex
from kdas.runtime.service import ServiceConfig, create_app, load_service

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

TOKEN = "test-token-123"


class LiveServer:
    """uvicorn in a thread on a socket bound here (no port race), stopped by `close`."""

    def __init__(self, app) -> None:
        self.socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.index_dir: Path | None = None
        config = uvicorn.Config(app, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)
        self.socket.close()


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, tiny_market: Path):
    from runtime_model import export_tiny_model

    from kdas.data.layouts import load_dataset
    from kdas.runtime.pipeline import build_index

    root = tmp_path_factory.mktemp("service")
    model, _ = export_tiny_model(root / "tiny.onnx")
    splits = load_dataset(tiny_market, "market1501")
    build_index(model, splits.gallery, root / "index")
    return root / "index", splits


def serve_copy(source: Path, target: Path, token: str | None, **limits) -> LiveServer:
    shutil.copytree(source, target)
    service = load_service(target, ServiceConfig(token=token, **limits))
    live = LiveServer(create_app(service))
    live.index_dir = target
    return live


@pytest.fixture(scope="module")
def server(built, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    index_dir, _ = built
    live = serve_copy(
        index_dir, tmp_path_factory.mktemp("srv") / "index", TOKEN,
        max_batch=4, max_upload_mb=0.05,
    )  # fmt: skip
    yield live
    live.close()


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def jpeg(path: str | Path) -> bytes:
    return Path(path).read_bytes()


def noise_png(height: int, width: int, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


# --- read-only endpoints -------------------------------------------------------------------------
def test_health_stats_page_and_openapi(client: httpx.Client, built) -> None:
    _, splits = built
    assert client.get("/healthz").json() == {"status": "ok", "count": len(splits.gallery)}
    stats = client.get("/v1/stats").json()
    assert stats["count"] == len(splits.gallery)
    assert stats["index"]["index_type"] == "flat"
    assert stats["model"]["embedding_dim"] == 16 and stats["model"]["input_size"] == [32, 16]
    assert stats["uptime_seconds"] >= 0 and stats["requests"]["GET /healthz"] >= 1
    assert stats["mutations_enabled"] is True
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="search-form"' in page.text and "/v1/search" in page.text
    spec = client.get("/openapi.json").json()
    assert {"/v1/search", "/v1/gallery", "/v1/gallery/{gallery_id}", "/v1/stats"} <= set(
        spec["paths"]
    )
    assert client.get("/docs").status_code == 200


def test_search_returns_the_image_itself_first(client: httpx.Client, built) -> None:
    _, splits = built
    records = splits.gallery[:2]
    files = [("images", (Path(r.path).name, jpeg(r.path), "image/jpeg")) for r in records]
    response = client.post("/v1/search", files=files, data={"k": "5"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["image"] for r in body["results"]] == [Path(r.path).name for r in records]
    for record, result in zip(records, body["results"], strict=True):
        hits = result["hits"]
        assert len(hits) == 5
        assert hits[0]["path"] == record.path and hits[0]["score"] == pytest.approx(1, abs=1e-5)
        assert (hits[0]["pid"], hits[0]["camid"]) == (record.pid, record.camid)
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    assert set(body["timings_ms"]) == {"decode", "embed", "search", "total"}


def test_search_excludes_the_query_camera(client: httpx.Client, built) -> None:
    _, splits = built
    record = splits.gallery[0]
    files = [("images", ("q.jpg", jpeg(record.path), "image/jpeg"))]
    data = {"k": "8", "exclude_same_camera": "true", "camid": str(record.camid)}
    hits = client.post("/v1/search", files=files, data=data).json()["results"][0]["hits"]
    assert hits and all(h["camid"] != record.camid for h in hits)
    missing = client.post("/v1/search", files=files, data={"exclude_same_camera": "true"})
    assert missing.status_code == 400 and "camid" in missing.json()["detail"]


def test_search_errors(client: httpx.Client, built) -> None:
    _, splits = built
    good = ("images", ("ok.jpg", jpeg(splits.gallery[0].path), "image/jpeg"))
    bad = client.post("/v1/search", files=[good, ("images", ("notes.txt", b"hello", "text/plain"))])
    assert bad.status_code == 400
    assert "notes.txt" in bad.json()["detail"] and "not a readable image" in bad.json()["detail"]
    truncated = jpeg(splits.gallery[0].path)[:150]
    cut = client.post("/v1/search", files=[("images", ("cut.jpg", truncated, "image/jpeg"))])
    assert cut.status_code == 400 and "cut.jpg" in cut.json()["detail"]
    assert client.post("/v1/search", data={"k": "3"}).status_code == 422  # no image at all
    zero = client.post("/v1/search", files=[good], data={"k": "0"})
    assert zero.status_code == 400 and "k must be" in zero.json()["detail"]
    many = client.post("/v1/search", files=[good] * 5)  # max_batch=4
    assert many.status_code == 413 and "limit is 4" in many.json()["detail"]
    big = noise_png(200, 100)  # ~60 kB of noise > max_upload_mb=0.05
    large = client.post("/v1/search", files=[("images", ("big.png", big, "image/png"))])
    assert large.status_code == 413 and "big.png" in large.json()["detail"]
    huge = client.post("/v1/search", files=[("images", ("h.png", b"0" * 600_000, "image/png"))])
    assert huge.status_code == 413 and "too large" in huge.json()["detail"]
    assert client.get("/v1/gallery/999999/image").status_code == 404


def test_thumbnails_only_for_indexed_images(client: httpx.Client) -> None:
    response = client.get("/v1/gallery/1/image")
    assert response.status_code == 200 and response.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(response.content)).height == 128
    assert client.get("/v1/gallery/0/image").status_code == 404
    assert client.get("/v1/gallery/abc/image").status_code == 422


# --- mutations -----------------------------------------------------------------------------------
def test_gallery_changes_need_the_token(client: httpx.Client, server: LiveServer) -> None:
    image = ("images", ("new.png", noise_png(64, 32, seed=7), "image/png"))
    form = {"pid": "4242", "camid": "1"}
    assert client.post("/v1/gallery", files=[image], data=form).status_code == 401
    wrong = client.post(
        "/v1/gallery", files=[image], data=form, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401 and wrong.json()["detail"] == "wrong bearer token"
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert client.delete("/v1/gallery/1").status_code == 401


def test_add_search_delete_and_persistence(client: httpx.Client, server: LiveServer) -> None:
    index_dir = server.index_dir
    before = client.get("/healthz").json()["count"]
    payload = noise_png(64, 32, seed=11)
    added = client.post(
        "/v1/gallery",
        files=[("images", ("new.png", payload, "image/png"))],
        data={"pid": "4242", "camid": "1"},
        headers=AUTH,
    )
    assert added.status_code == 200, added.text
    (new_id,) = added.json()["ids"]
    assert added.json()["count"] == before + 1
    on_disk = GalleryIndex.open(index_dir)  # saved before the response
    assert len(on_disk) == before + 1 and on_disk.get(new_id).pid == 4242
    stored = Path(on_disk.get(new_id).path)
    assert stored.read_bytes() == payload

    hits = client.post(
        "/v1/search", files=[("images", ("q.png", payload, "image/png"))], data={"k": "1"}
    ).json()["results"][0]["hits"]
    assert hits[0]["id"] == new_id and hits[0]["pid"] == 4242 and hits[0]["camid"] == 1
    thumb = client.get(f"/v1/gallery/{new_id}/image")
    assert thumb.status_code == 200 and Image.open(io.BytesIO(thumb.content)).size == (64, 128)

    bad = client.post(
        "/v1/gallery",
        files=[("images", ("x.png", b"not an image", "image/png"))],
        data={"pid": "1", "camid": "0"},
        headers=AUTH,
    )
    assert bad.status_code == 400 and "x.png" in bad.json()["detail"]
    mismatch = client.post(
        "/v1/gallery",
        files=[("images", ("a.png", payload, "image/png"))] * 2,
        data={"pid": ["1", "2", "3"], "camid": "0"},
        headers=AUTH,
    )
    assert mismatch.status_code == 400 and "pid" in mismatch.json()["detail"]

    removed = client.delete(f"/v1/gallery/{new_id}", headers=AUTH)
    assert removed.status_code == 200 and removed.json()["count"] == before
    assert len(GalleryIndex.open(index_dir)) == before
    assert not stored.exists()  # the uploaded copy goes once nothing refers to it
    again = client.delete(f"/v1/gallery/{new_id}", headers=AUTH)
    assert again.status_code == 404 and str(new_id) in again.json()["detail"]
    assert client.get(f"/v1/gallery/{new_id}/image").status_code == 404


def test_read_only_without_a_token(built, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index_dir, _ = built
    monkeypatch.delenv("KDAS_API_TOKEN", raising=False)
    live = serve_copy(index_dir, tmp_path / "index", token=None)
    try:
        with httpx.Client(base_url=live.url, timeout=30) as c:
            image = ("images", ("n.png", noise_png(64, 32), "image/png"))
            refused = c.post("/v1/gallery", files=[image], data={"pid": "1", "camid": "0"})
            assert refused.status_code == 403
            assert "KDAS_API_TOKEN" in refused.json()["detail"]
            assert c.delete("/v1/gallery/1", headers=AUTH).status_code == 403
            assert c.get("/v1/stats").json()["mutations_enabled"] is False
    finally:
        live.close()
    monkeypatch.setenv("KDAS_API_TOKEN", "from-env")
    assert load_service(tmp_path / "index").config.token == "from-env"


def test_concurrent_searches(client: httpx.Client, built) -> None:
    _, splits = built
    payloads = [jpeg(r.path) for r in splits.gallery[:4]]

    def one(i: int) -> tuple[int, str]:
        files = [("images", ("q.jpg", payloads[i % 4], "image/jpeg"))]
        r = client.post("/v1/search", files=files, data={"k": "3"})
        return r.status_code, r.json()["results"][0]["hits"][0]["path"]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(one, range(24)))
    assert all(code == 200 for code, _ in results)
    assert [p for _, p in results] == [splits.gallery[i % 4].path for i in range(24)]


# --- the page in a real browser ------------------------------------------------------------------
def chromium_driver():
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        pytest.skip("headless Chromium is not installed: apt-get install chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)


def test_page_search_in_headless_chromium(server: LiveServer, built) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    _, splits = built
    query = splits.gallery[3]
    driver = chromium_driver()
    try:
        driver.set_page_load_timeout(30)
        driver.get(server.url + "/")
        driver.find_element(By.ID, "image").send_keys(query.path)
        driver.find_element(By.ID, "k").clear()
        driver.find_element(By.ID, "k").send_keys("4")
        driver.find_element(By.ID, "search-button").click()
        wait = WebDriverWait(driver, 30)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "figure.hit")) == 4)
        wait.until(  # every thumbnail actually loaded from /v1/gallery/{id}/image
            lambda d: d.execute_script(
                "return [...document.querySelectorAll('figure.hit img')]"
                ".every(i => i.complete && i.naturalWidth > 0)"
            )
        )
        hits = driver.find_elements(By.CSS_SELECTOR, "figure.hit")
        scores = [float(h.find_element(By.CSS_SELECTOR, ".score").text) for h in hits]
        assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(1, abs=1e-3)
        sources = [h.find_element(By.TAG_NAME, "img").get_attribute("src") for h in hits]
        assert all("/v1/gallery/" in s and s.endswith("/image") for s in sources)
        assert "hits in" in driver.find_element(By.ID, "status").text
    finally:
        driver.quit()


def test_failed_save_undoes_a_removal(built, tmp_path: Path, monkeypatch) -> None:
    from kdas.runtime.index import GalleryIndex
    from kdas.runtime.service import RequestError

    index_dir, _ = built
    shutil.copytree(index_dir, tmp_path / "index")
    service = load_service(tmp_path / "index", ServiceConfig(token="t"))
    before = len(service.index)

    def broken_save(self, path=None):
        raise OSError("disk full")

    monkeypatch.setattr(GalleryIndex, "save", broken_save)
    with pytest.raises(RequestError, match="disk full") as refused:
        service.remove(1)
    assert refused.value.status == 500
    monkeypatch.undo()
    assert service.index.get(1) is not None and len(service.index) == before
    assert service.remove(1)["count"] == before - 1  # and a working save removes it
