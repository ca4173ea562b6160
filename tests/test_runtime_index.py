"""The FAISS gallery index: search against a brute-force reference, persistence, refusals,
crash safety, removal, camera filtering, concurrency and metrics."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kdas.errors import KdasError
from kdas.runtime import faiss_backend as fb
from kdas.runtime.exact import exact_topk
from kdas.runtime.index import GalleryIndex, UnknownIds
from kdas.runtime.model_meta import EmbeddingModelInfo

DIM = 16


def model_info(sha: str = "a" * 64, dim: int = DIM) -> EmbeddingModelInfo:
    return EmbeddingModelInfo(
        model_kind="student", input_name="images", output_name="embeddings",
        input_height=32, input_width=16, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        embedding_dim=dim, weights_sha256=sha,
    )  # fmt: skip


def clustered(ids: int = 40, views: int = 6, cams: int = 3, seed: int = 0):
    """Identities as random directions, views as noisy copies: (embeddings, records)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((ids, DIM)).astype(np.float32)
    x = np.repeat(centers, views, axis=0) + 0.5 * rng.standard_normal((ids * views, DIM))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    records = [(f"/g/{i // views:04d}_c{i % cams + 1}_{i}.jpg", i // views, i % cams)
               for i in range(ids * views)]  # fmt: skip
    return x, records


def brute_force(q: np.ndarray, g: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Reference top-k by cosine similarity; returns (scores, row positions)."""
    sims = (q / np.linalg.norm(q, axis=1, keepdims=True)) @ g.T
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, axis=1), order


@pytest.fixture(scope="module")
def data():
    return clustered()


def queries(seed: int = 5, n: int = 7) -> np.ndarray:
    x, _ = clustered(seed=0)
    rng = np.random.default_rng(seed)
    return (x[rng.choice(len(x), n, replace=False)] + 0.3 * rng.standard_normal((n, DIM))).astype(
        np.float32
    )


# --- search correctness --------------------------------------------------------------------------
@pytest.mark.parametrize("flat_search", ["numpy", "faiss"])
def test_flat_search_equals_brute_force(data, flat_search) -> None:
    x, records = data
    index = GalleryIndex.build(x, records, model_info(), params={"flat_search": flat_search})
    q = queries()
    ref_scores, ref_rows = brute_force(q, x, 10)
    scores, ids = index.search_ids(q, 10)
    np.testing.assert_array_equal(ids, ref_rows + 1)  # ids are 1-based rows at build time
    np.testing.assert_allclose(scores, ref_scores, atol=1e-5)
    one_scores, one_ids = index.search_ids(q[2:3], 10)  # a single query, as the service sends
    np.testing.assert_array_equal(one_ids[0], ref_rows[2] + 1)
    np.testing.assert_allclose(one_scores[0], ref_scores[2], atol=1e-5)
    hits = index.search(q, 10)
    assert [h.path for h in hits[0]] == [records[r][0] for r in ref_rows[0]]
    assert [(h.pid, h.camid) for h in hits[0]] == [records[r][1:] for r in ref_rows[0]]


@pytest.mark.parametrize(
    ("n_gallery", "n_query", "k"),
    [(0, 2, 5), (3, 2, 5), (5000, 7, 10), (150_000, 3, 10), (70_000, 2, 100), (9000, 1, 1)],
)
def test_numpy_exact_topk_against_a_full_sort(n_gallery, n_query, k) -> None:
    """Several blocks, k larger than the gallery, k = 1; ties resolved by gallery row."""
    rng = np.random.default_rng(n_gallery + k)
    g = rng.standard_normal((n_gallery, 8)).astype(np.float32)
    if n_gallery:
        g[1::7] = g[0]  # exact ties across the gallery
    q = rng.standard_normal((n_query, 8)).astype(np.float32)
    scores, rows = exact_topk(q, g, k)
    sims = q @ g.T
    kk = min(k, n_gallery)
    ref = np.argsort(-sims, axis=1, kind="stable")[:, :kk]
    np.testing.assert_array_equal(rows[:, :kk], ref)
    np.testing.assert_allclose(scores[:, :kk], np.take_along_axis(sims, ref, 1), atol=1e-5)
    assert (rows[:, kk:] == -1).all() and np.isneginf(scores[:, kk:]).all()


def test_blas_threshold_is_set_only_during_search(data) -> None:
    faiss = fb.import_faiss()
    before = faiss.cvar.distance_compute_blas_threshold
    seen = []
    with fb.blas_for_small_batches():
        with fb.blas_for_small_batches():  # nested / concurrent users share the override
            seen.append(faiss.cvar.distance_compute_blas_threshold)
        seen.append(faiss.cvar.distance_compute_blas_threshold)
    assert seen == [0, 0]
    assert faiss.cvar.distance_compute_blas_threshold == before
    index = GalleryIndex.build(*data, model_info(), params={"flat_search": "faiss"})
    index.search_ids(queries(), 5)
    assert faiss.cvar.distance_compute_blas_threshold == before


@pytest.mark.parametrize(
    ("index_type", "params"),
    [
        ("ivf", {"nprobe": 64}),
        ("ivf", {"nprobe": 64, "storage": "sq8"}),
        ("hnsw", {"m": 16, "ef_search": 256}),
        ("hnsw", {"m": 16, "ef_search": 256, "storage": "fp16"}),
    ],
)
def test_approximate_indexes_find_the_exact_neighbours(data, index_type, params) -> None:
    """Small gallery + generous parameters: approximate search must agree with exact search."""
    x, records = data
    index = GalleryIndex.build(x, records, model_info(), index_type, params)
    assert index.params.nlist is None or index.params.nlist == fb.default_nlist(len(x))
    q = queries()
    _, ref_rows = brute_force(q, x, 5)
    _, ids = index.search_ids(q, 5)
    np.testing.assert_array_equal(ids[:, 0], ref_rows[:, 0] + 1)
    assert np.mean(ids == ref_rows + 1) >= 0.9


def test_same_camera_exclusion(data) -> None:
    x, records = data
    cams = np.array([r[2] for r in records])
    index = GalleryIndex.build(x, records, model_info())
    q = x[:4] + 0.01  # each query is nearly a gallery image, so its camera dominates the top
    q_cams = cams[:4]
    _, full_rows = brute_force(q, x, len(x))
    _, ids = index.search_ids(q, 12, query_camids=q_cams, exclude_same_camera=True)
    for i in range(4):
        expected = [r + 1 for r in full_rows[i] if cams[r] != q_cams[i]][:12]
        assert ids[i].tolist() == expected
    hits = index.search(q, 12, query_camids=q_cams, exclude_same_camera=True)
    assert all(h.camid != q_cams[i] for i, row in enumerate(hits) for h in row)
    with pytest.raises(KdasError, match="camera id of each query"):
        index.search(q, 3, exclude_same_camera=True)


def test_exclusion_with_a_single_other_camera_hit() -> None:
    """Only one gallery image is in another camera: it must be found, the rest padded."""
    x, records = clustered(ids=5, views=4, cams=1)
    records[7] = (records[7][0], records[7][1], 2)
    index = GalleryIndex.build(x, records, model_info())
    scores, ids = index.search_ids(x[:1], 5, query_camids=[0], exclude_same_camera=True)
    assert ids[0].tolist() == [8, -1, -1, -1, -1]
    assert np.isneginf(scores[0, 1:]).all()
    assert len(index.search(x[:1], 5, query_camids=[0], exclude_same_camera=True)[0]) == 1


# --- mutation ------------------------------------------------------------------------------------
@pytest.mark.parametrize("index_type", ["flat", "ivf", "hnsw"])
def test_remove_and_add(data, index_type) -> None:
    x, records = data
    index = GalleryIndex.build(x, records, model_info(), index_type, {"nprobe": 64})
    q = x[:3]
    top = index.search_ids(q, 1)[1][:, 0]
    np.testing.assert_array_equal(top, [1, 2, 3])
    assert index.remove([1, 2]) == 2
    assert len(index) == len(x) - 2
    _, ids = index.search_ids(q, 10)
    assert not np.isin(ids, [1, 2]).any()
    assert ids[2, 0] == 3
    with pytest.raises(UnknownIds, match="id 1"):
        index.remove([1, 3])
    assert index.get(3) is not None  # a failed remove removes nothing
    new_ids = index.add(x[:1], [("/new/a.jpg", 999, 1)])
    assert new_ids.tolist() == [len(x) + 1]  # never reuses removed ids
    hit = index.search(x[:1], 1)[0][0]
    assert (hit.id, hit.path, hit.pid, hit.camid) == (len(x) + 1, "/new/a.jpg", 999, 1)
    if index_type == "hnsw":  # graph vectors stay as tombstones until compaction
        assert index.stored_vectors == len(index) + 2
        index.compact()
    assert index.stored_vectors == len(index)
    assert not np.isin(index.search_ids(q, 10)[1], [1, 2]).any()


def test_bad_inputs_are_refused(data) -> None:
    x, records = data
    with pytest.raises(KdasError, match="expected"):
        GalleryIndex.build(x[:, :8], records, model_info())
    with pytest.raises(KdasError, match="records"):
        GalleryIndex.build(x, records[:-1], model_info())
    with pytest.raises(KdasError, match="NaN"):
        GalleryIndex.build(np.full_like(x, np.nan), records, model_info())
    with pytest.raises(KdasError, match="unknown index type"):
        GalleryIndex.build(x, records, model_info(), "annoy")
    with pytest.raises(KdasError, match="sq8"):
        GalleryIndex.build(x, records, model_info(), "flat", {"storage": "sq8"})
    with pytest.raises(KdasError, match="GPU"):
        if fb.gpu_count() == 0:
            GalleryIndex.build(x, records, model_info(), device="gpu")
        else:
            GalleryIndex.build(x, records, model_info(), "hnsw", device="gpu")


def test_concurrent_searches_and_writes(data) -> None:
    x, records = data
    index = GalleryIndex.build(x, records, model_info(), "flat")
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            for _ in range(200):
                if stop.is_set():
                    return
                _, ids = index.search_ids(x[:5], 5)
                assert (ids[:, 0] > 0).all()
                rows = index.search(x[:2], 3)
                assert all(len(r) == 3 for r in rows)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    added = []
    for i in range(20):
        added.extend(index.add(x[i : i + 1], [(f"/w/{i}.jpg", 500 + i, 0)]).tolist())
        if i % 2:
            index.remove([added.pop(0)])
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors[0]
    assert len(index) == len(x) + 10
    assert index.stored_vectors == len(index)


# --- persistence ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("index_type", "params"),
    [("flat", {}), ("ivf", {"nprobe": 8, "nlist": 4}), ("hnsw", {"m": 8, "ef_search": 40})],
)
def test_save_and_open_round_trip(tmp_path: Path, data, index_type, params) -> None:
    x, records = data
    model = tmp_path / "source.onnx"
    model.write_bytes(b"pretend model bytes")
    index = GalleryIndex.build(x, records, model_info(), index_type, params, model_path=model)
    index.remove([5])
    folder = index.save(tmp_path / "index")
    assert sorted(p.name for p in folder.iterdir()) == [
        "gallery.sqlite", "index.faiss", "manifest.json", "model.onnx",
    ]  # fmt: skip
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["model"]["weights_sha256"] == "a" * 64
    assert manifest["model"]["input_height"] == 32 and manifest["dimension"] == DIM
    assert manifest["index_type"] == index_type and manifest["metric"] == "inner_product"
    assert manifest["count"] == len(x) - 1 and manifest["next_id"] == len(x) + 1
    assert manifest["index_params"]["nprobe"] == params.get("nprobe", fb.IndexParams().nprobe)
    assert manifest["kdas_version"] and manifest["created"] and manifest["updated"]
    assert (folder / "model.onnx").read_bytes() == b"pretend model bytes"

    again = GalleryIndex.open(folder, expected_model=model_info())
    assert again.index_type == index_type and again.params == index.params
    q = queries()
    for a, b in zip(index.search(q, 8), again.search(q, 8), strict=True):
        assert [(h.id, h.path, h.pid, h.camid) for h in a] == [
            (h.id, h.path, h.pid, h.camid) for h in b
        ]
        np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-6)
    ids_a, recs_a = index.records()
    ids_b, recs_b = again.records()
    np.testing.assert_array_equal(ids_a, ids_b)
    assert recs_a == recs_b
    # saving again in place keeps the model (hard link from the previous folder)
    again.add(x[:1], [("/n.jpg", 1, 0)])
    again.save()
    third = GalleryIndex.open(folder)
    assert len(third) == len(x) and third.model_path == folder / "model.onnx"
    assert third.model_path.read_bytes() == b"pretend model bytes"
    assert third.search_ids(x[:1], 1)[1][0, 0] in (1, len(x) + 1)


def test_open_refuses_another_model(tmp_path: Path, data) -> None:
    folder = GalleryIndex.build(*data, model_info()).save(tmp_path / "index")
    with pytest.raises(KdasError, match=r"built with model weights aaaaaaaaaaaa.*bbbbbbbbbbbb"):
        GalleryIndex.open(folder, expected_model=model_info(sha="b" * 64))
    with pytest.raises(KdasError, match="32-d"):
        GalleryIndex.open(folder, expected_model=replace(model_info(), embedding_dim=32))
    taller = replace(model_info(), input_height=model_info().input_height * 2)
    with pytest.raises(KdasError, match="another input size or normalisation"):
        GalleryIndex.open(folder, expected_model=taller)
    with pytest.warns(UserWarning, match="int8 one"):
        GalleryIndex.open(folder, expected_model=replace(model_info(), precision="int8"))


def test_open_reports_missing_and_corrupt_files(tmp_path: Path, data) -> None:
    folder = GalleryIndex.build(*data, model_info()).save(tmp_path / "index")
    with pytest.raises(KdasError, match="does not exist"):
        GalleryIndex.open(tmp_path / "nowhere")
    with pytest.raises(KdasError, match=r"manifest\.json is missing"):
        GalleryIndex.open(tmp_path)

    def broken(name: str, data_bytes: bytes | None = None, same_size: bool = False) -> Path:
        copy = Path(tempfile.mkdtemp(dir=tmp_path, prefix=f"copy-{name}-"))
        for item in folder.iterdir():
            (copy / item.name).write_bytes(item.read_bytes())
        target = copy / name
        original = target.read_bytes()
        if data_bytes is None:  # garbage of the same length, or truncated
            data_bytes = (
                (b"\x13garbage!" * len(original))[: len(original)]
                if same_size
                else (original[: len(original) // 2])
            )
        target.write_bytes(data_bytes)
        return copy

    with pytest.raises(KdasError, match=r"manifest.json is corrupt \(not valid JSON\)"):
        GalleryIndex.open(broken("manifest.json", b"{ not json"))
    with pytest.raises(KdasError, match="not a kdas index manifest"):
        GalleryIndex.open(broken("manifest.json", b"[1, 2]"))
    manifest = json.loads((folder / "manifest.json").read_text())
    for key, value in (("count", "many"), ("files", [1]), ("model", {"weights_sha256": "x"})):
        bad = dict(manifest, **{key: value})
        with pytest.raises(KdasError, match=r"manifest\.json.*(malformed|should be)"):
            GalleryIndex.open(broken("manifest.json", json.dumps(bad).encode()))
    with pytest.raises(KdasError, match=r"index\.faiss is corrupt"):
        GalleryIndex.open(broken("index.faiss"))
    with pytest.raises(KdasError, match=r"gallery\.sqlite is corrupt"):
        GalleryIndex.open(broken("gallery.sqlite"))
    # without checksum verification the readers themselves must still fail in one clear line
    with pytest.raises(KdasError, match=r"index\.faiss is corrupt or truncated"):
        GalleryIndex.open(broken("index.faiss", same_size=True), verify=False)
    with pytest.raises(KdasError, match=r"gallery metadata .*gallery\.sqlite is corrupt"):
        GalleryIndex.open(broken("gallery.sqlite", same_size=True), verify=False)
    missing = broken("index.faiss", same_size=True)
    (missing / "index.faiss").unlink()
    with pytest.raises(KdasError, match=r"index\.faiss is missing"):
        GalleryIndex.open(missing)


def test_failed_save_keeps_the_previous_index(
    tmp_path: Path, data, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, records = data
    index = GalleryIndex.build(x, records, model_info())
    folder = index.save(tmp_path / "index")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    index.add(x[:3], [("/a.jpg", 1, 0), ("/b.jpg", 1, 1), ("/c.jpg", 2, 0)])

    def fail(*args, **kwargs):
        raise OSError("disk full (simulated)")

    # fails after index.faiss is written
    monkeypatch.setattr("kdas.runtime.index_persistence.write_sqlite", fail)
    with pytest.raises(OSError, match="simulated"):
        index.save()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert len(GalleryIndex.open(folder)) == len(x)
    assert [p.name for p in tmp_path.iterdir()] == ["index"]  # no temp folder left behind


def test_killed_process_mid_save_keeps_the_previous_index(tmp_path: Path, data) -> None:
    """A hard crash (no exception handling, no cleanup) while the new folder is written."""
    x, records = data
    folder = GalleryIndex.build(x, records, model_info()).save(tmp_path / "index")
    np.save(tmp_path / "x.npy", x)
    code = textwrap.dedent(
        f"""
        import os
        import numpy as np
        import kdas.runtime.index_persistence as index_module
        from kdas.runtime.index import GalleryIndex

        def die(*args, **kwargs):
            os._exit(9)  # the process dies after index.faiss was written, before the swap

        index = GalleryIndex.open({str(folder)!r})
        index.add(np.load({str(tmp_path / "x.npy")!r})[:2], [("/k1.jpg", 1, 0), ("/k2.jpg", 1, 1)])
        index_module.write_sqlite = die
        index.save()
        """
    )
    result = subprocess.run([sys.executable, "-c", code], timeout=120, check=False)
    assert result.returncode == 9
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".index.")]
    assert leftovers, "the crash should have left its temp folder behind"
    assert all(p.name.endswith(".tmp") for p in tmp_path.iterdir() if p.name.startswith("."))
    reopened = GalleryIndex.open(folder)  # and opening the index removes it
    assert len(reopened) == len(x)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["index", "x.npy"]
    assert sorted(os.listdir(folder)) == ["gallery.sqlite", "index.faiss", "manifest.json"]


# --- metrics and re-ranking ----------------------------------------------------------------------
def test_runtime_metrics_equal_the_evaluation_module(tmp_path: Path, tiny_market: Path) -> None:
    """Runtime (numpy preprocessing, ONNX Runtime, FAISS) vs torch (transform, model, matrix)."""
    import torch
    from PIL import Image
    from runtime_model import export_tiny_model, tiny_net

    from kdas.data.layouts import load_dataset
    from kdas.data.transforms import build_eval_transform
    from kdas.evaluation.metrics import evaluate_rank
    from kdas.runtime.embedder import Embedder
    from kdas.runtime.pipeline import build_index, evaluate_index

    model_path, info = export_tiny_model(tmp_path / "tiny.onnx")
    splits = load_dataset(tiny_market, "market1501")
    transform = build_eval_transform((info.input_height, info.input_width))
    net = tiny_net()

    def torch_features(records) -> np.ndarray:
        with torch.no_grad():
            return net(torch.stack([transform(Image.open(r.path)) for r in records])).numpy()

    qf, gf = torch_features(splits.query), torch_features(splits.gallery)
    distmat = 1.0 - qf @ gf.T
    expected = evaluate_rank(
        distmat,
        [r.pid for r in splits.query], [r.pid for r in splits.gallery],
        [r.camid for r in splits.query], [r.camid for r in splits.gallery],
    )  # fmt: skip

    for index_type in ("flat", "hnsw"):
        index = build_index(model_path, splits.gallery, tmp_path / index_type, index_type)
        result = evaluate_index(index, Embedder(index.model_path), splits.query)
        assert result["num_gallery"] == len(splits.gallery)
        for key, value in expected.to_dict().items():
            assert result["metrics"][key] == pytest.approx(value, abs=1e-6), (index_type, key)
        np.testing.assert_allclose(result["cmc"], expected.cmc, atol=1e-6)


def test_rerank_reorders_with_the_evaluation_rerank(data) -> None:
    rerank_module = pytest.importorskip("kdas.evaluation.rerank")
    x, records = data
    index = GalleryIndex.build(x, records, model_info())
    q = queries(n=2)
    hits = index.search(q, 5, rerank=True, rerank_candidates=len(x))
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    for i, row in enumerate(hits):
        final = rerank_module.rerank(
            1.0 - qn[i : i + 1] @ x.T, np.zeros((1, 1)), 1.0 - x @ x.T,
            k1=20, k2=6, lambda_value=0.3,
        )  # fmt: skip
        expected = np.argsort(np.asarray(final)[0], kind="stable")[:5] + 1
        assert [h.id for h in row] == expected.tolist()
        np.testing.assert_allclose([h.score for h in row], qn[i] @ x[expected - 1].T, atol=1e-5)
