"""Hard crashes of the runtime's writers, in real processes: the service killed (SIGKILL) in the
middle of an add, `kdas index compact` killed in the middle of its save.

Afterwards the index must load, hold every image whose add was acknowledged (one that was not
may or may not be there), agree with its gallery database, and have no temp folder beside it.
The kill lands *during* the save without any hook in the code: the test watches the index's
parent folder and kills the writer the moment its temp folder appears, with a gallery large
enough that a save takes a good fraction of a second.

The rules of the cleanup (only a dead save's folders, only names the writer uses, never while a
save is live, never beside a missing index) are checked in one process at the end.
"""

from __future__ import annotations

import io
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdas.runtime.index import GalleryIndex

httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")
pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="SIGKILL and flock: Linux only"
)

TOKEN = "fault-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GALLERY_SIZE = 200_000  # vectors: saving them takes long enough to be killed in the middle
START_TIMEOUT = 90  # seconds for a fresh `kdas serve` to answer /healthz on a loaded machine


@pytest.fixture(scope="module")
def big_index(tmp_path_factory: pytest.TempPathFactory, tiny_market: Path) -> Path:
    """A flat index of GALLERY_SIZE random vectors over the tiny set's images, with its model."""
    from runtime_model import export_tiny_model

    from kdas.data.layouts import load_dataset

    root = tmp_path_factory.mktemp("faults")
    model, info = export_tiny_model(root / "tiny.onnx")
    paths = [r.path for r in load_dataset(tiny_market, "market1501").gallery]
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((GALLERY_SIZE, info.embedding_dim)).astype(np.float32)
    records = [(paths[i % len(paths)], i % 50, i % 3) for i in range(GALLERY_SIZE)]
    index = GalleryIndex.build(vectors, records, info, model_path=model)
    return index.save(root / "index")


def copy_index(source: Path, target: Path) -> Path:
    import shutil

    shutil.copytree(source, target)
    return target


def temp_folders(index_dir: Path) -> list[str]:
    """Everything a save leaves beside the index while it runs (atomic_directory's prefix)."""
    return sorted(
        p.name for p in index_dir.parent.iterdir() if p.name.startswith(f".{index_dir.name}.")
    )


def wait_until(condition: Callable[[], bool], timeout: float, step: float = 0.001) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kdas_process(args: list[str], log: Path, **env: str) -> subprocess.Popen:
    """`python -m kdas ARGS` with its output in `log` (a pipe nobody reads could fill up)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "kdas", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
        )


class Service:
    """`kdas serve INDEX` in its own process, as deployed; `kill` is a SIGKILL."""

    def __init__(self, index_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.process = kdas_process(
            ["serve", str(index_dir), "--port", str(self.port), "--log-level", "warning"],
            log,
            KDAS_API_TOKEN=TOKEN,
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        if not wait_until(self._healthy, START_TIMEOUT, step=0.1):
            self.stop()
            pytest.fail(f"kdas serve did not start:\n{log.read_text()[-3000:]}")

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            pytest.fail(f"kdas serve exited {self.process.returncode}:\n{self.log.read_text()}")
        try:
            return self.client.get("/healthz").status_code == 200
        except httpx.TransportError:
            return False

    def count(self) -> int:
        return self.client.get("/healthz").json()["count"]

    def kill(self) -> None:
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.client.close()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Callable[[Path], Service]]:
    """Start services; every one still running is stopped at the end, whatever happened."""
    started: list[Service] = []

    def start(index_dir: Path) -> Service:
        started.append(Service(index_dir, tmp_path / f"serve-{len(started)}.log"))
        return started[-1]

    yield start
    for service in started:
        service.stop()


def png(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 32, 3), dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def add(service: Service, pid: int, seeds: range) -> httpx.Response:
    files = [("images", (f"{pid}-{s}.png", png(s), "image/png")) for s in seeds]
    return service.client.post(
        "/v1/gallery", files=files, data={"pid": str(pid), "camid": "1"}, headers=AUTH
    )


def check_consistent(index_dir: Path, acknowledged: dict[int, int], count: int) -> None:
    """The folder loads (sizes, checksums and counts checked), the SQLite gallery holds `count`
    rows, and every acknowledged id is there with its identity."""
    index = GalleryIndex.open(index_dir)
    assert len(index) == count
    with sqlite3.connect(f"file:{index_dir / 'gallery.sqlite'}?mode=ro", uri=True) as db:
        assert db.execute("SELECT COUNT(*) FROM gallery").fetchone()[0] == count
    for gallery_id, pid in acknowledged.items():
        record = index.get(gallery_id)
        assert record is not None, f"acknowledged gallery id {gallery_id} is lost"
        assert record.pid == pid


def add_killed_mid_save(
    service: Service, index_dir: Path, pid: int, seeds: range
) -> tuple[httpx.Response | None, bool]:
    """Send an add and SIGKILL the service as soon as its save's temp folder appears; returns
    the response (None: killed before it answered) and whether the kill happened."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(add, service, pid, seeds)
        wait_until(lambda: bool(temp_folders(index_dir)) or pending.done(), timeout=60)
        killed = not pending.done()
        if killed:
            service.kill()
        try:
            return pending.result(timeout=60), killed
        except httpx.TransportError:
            return None, killed


def test_service_killed_during_an_add_keeps_every_acknowledged_image(
    big_index: Path, tmp_path: Path, services
) -> None:
    index_dir = copy_index(big_index, tmp_path / "index")
    service = services(index_dir)
    acknowledged: dict[int, int] = {}
    batch = 16  # images per add: the service's default limit
    for attempt in range(6):  # an add that finishes before its save is seen is acknowledged
        pid = 9000 + attempt
        response, killed = add_killed_mid_save(
            service, index_dir, pid, range(attempt * batch, (attempt + 1) * batch)
        )
        if response is not None:
            assert response.status_code == 200, response.text
            acknowledged.update({i: pid for i in response.json()["ids"]})
        if killed:
            break
    assert killed, "every add finished before its save could be seen: make the gallery bigger"
    assert temp_folders(index_dir), "the kill should have left the save's temp folder behind"
    in_flight = batch if response is None else 0

    restarted = services(index_dir)
    count = restarted.count()
    assert count in (GALLERY_SIZE + len(acknowledged), GALLERY_SIZE + len(acknowledged) + in_flight)
    assert temp_folders(index_dir) == []  # the restarted service removed the dead save's copy
    check_consistent(index_dir, acknowledged, count)

    after = add(restarted, 9100, range(20_000, 20_002))  # and it goes on working
    assert after.status_code == 200, after.text
    assert after.json()["count"] == count + 2
    acknowledged.update({i: 9100 for i in after.json()["ids"]})
    check_consistent(index_dir, acknowledged, count + 2)


def test_compact_killed_mid_save_leaves_an_index_the_service_opens_clean(
    big_index: Path, tmp_path: Path, services
) -> None:
    index_dir = copy_index(big_index, tmp_path / "index")
    before = GalleryIndex.open(index_dir)
    acknowledged = {int(i): r.pid for i, r in zip(*before.records(), strict=True) if i % 997 == 0}
    compact = kdas_process(["index", "compact", str(index_dir)], tmp_path / "compact.log")
    try:
        seen = wait_until(lambda: bool(temp_folders(index_dir)) or compact.poll() is not None, 120)
        assert seen and compact.poll() is None, (
            f"compact ended before its save was seen:\n{(tmp_path / 'compact.log').read_text()}"
        )
        os.kill(compact.pid, signal.SIGKILL)
    finally:
        if compact.poll() is None:
            compact.kill()
        compact.wait(timeout=30)
    assert compact.returncode == -signal.SIGKILL
    assert temp_folders(index_dir), "the kill should have left the save's temp folder behind"

    service = services(index_dir)
    assert service.count() == GALLERY_SIZE
    assert temp_folders(index_dir) == []
    check_consistent(index_dir, acknowledged, GALLERY_SIZE)


# --- the cleanup's rules, in one process -------------------------------------------------------
def small_index(folder: Path) -> GalleryIndex:
    from runtime_model import EMBED_DIM, INPUT_SIZE

    from kdas.runtime.model_meta import EmbeddingModelInfo

    info = EmbeddingModelInfo(
        model_kind="student", input_name="images", output_name="embeddings",
        input_height=INPUT_SIZE[0], input_width=INPUT_SIZE[1], mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5), embedding_dim=EMBED_DIM, weights_sha256="c" * 64,
    )  # fmt: skip
    vectors = np.random.default_rng(1).standard_normal((20, EMBED_DIM)).astype(np.float32)
    index = GalleryIndex.build(vectors, [(f"/g/{i}.jpg", i, 0) for i in range(20)], info)
    index.save(folder)
    return index


def test_open_removes_only_dead_saves_temp_folders(tmp_path: Path) -> None:
    folder = tmp_path / "index"
    small_index(folder)
    dead = [tmp_path / ".index.k3x_9q0z.tmp", tmp_path / ".index.old-4242"]
    look_alikes = [
        tmp_path / ".index.short.tmp",  # not mkdtemp's 8 characters
        tmp_path / ".index.ABCDEFGH.tmp",  # mkdtemp draws lower case only
        tmp_path / ".other.k3x_9q0z.tmp",  # another folder's
        tmp_path / "index.k3x_9q0z.tmp",  # not hidden
        tmp_path / ".index.k3x_9q0z.tmp.bak",
    ]
    for path in dead + look_alikes:
        path.mkdir()
        (path / "manifest.json").write_text("{}")
    (tmp_path / ".index.zzzzzzzz.tmp").write_text("a file, not a save's folder")

    reopened = GalleryIndex.open(folder)
    assert len(reopened) == 20
    assert not any(p.exists() for p in dead)
    assert all(p.is_dir() for p in look_alikes)
    assert (tmp_path / ".index.zzzzzzzz.tmp").is_file()


def test_open_keeps_the_temp_folder_of_a_live_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save in progress (here: another thread, stopped inside its temp folder) holds the
    writer lock; an open meanwhile must leave its temp folder alone."""
    import threading

    import kdas.runtime.index_persistence as persistence

    folder = tmp_path / "index"
    index = small_index(folder)
    inside, release = threading.Event(), threading.Event()
    write_sqlite = persistence.write_sqlite

    def slow_write(table, path: Path) -> None:
        write_sqlite(table, path)
        inside.set()
        release.wait(timeout=60)

    monkeypatch.setattr(persistence, "write_sqlite", slow_write)
    with ThreadPoolExecutor(max_workers=1) as pool:
        saving = pool.submit(index.save)
        try:
            assert inside.wait(timeout=60)
            live = temp_folders(folder)
            assert len(live) == 1
            assert len(GalleryIndex.open(folder)) == 20  # the previous index, still whole
            assert temp_folders(folder) == live  # the live save's folder was not touched
        finally:
            release.set()
        saving.result(timeout=60)
    assert temp_folders(folder) == []
    assert len(GalleryIndex.open(folder)) == 20


def test_nothing_is_removed_beside_a_missing_index(tmp_path: Path) -> None:
    """With the index gone, a crash between the fallback swap's two renames may have left the
    only copies in the temp folders: they are kept for a person to look at."""
    from kdas.errors import KdasError

    folder = tmp_path / "index"
    small_index(folder)
    (folder / "manifest.json").unlink()
    old = tmp_path / ".index.old-77"
    old.mkdir()
    with pytest.raises(KdasError, match="not a kdas index"):
        GalleryIndex.open(folder)
    assert old.is_dir() and folder.is_dir()
