"""The synthetic generator: exact layouts, the Market-like protocol, reproducible bytes."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kdas.data.synthetic import CONFIG_FILE, SynthConfig, synthesize
from kdas.errors import KdasError

CONFIG = SynthConfig(ids=10, cameras=4, images_per_camera=2, size=(32, 16), seed=11)


def _digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("m") / "out", CONFIG)


def _by_name(folder: Path) -> list[tuple[int, int, str]]:
    return [
        (int(p.name.split("_")[0]), int(p.name.split("_")[1][1]), p.name)
        for p in sorted(folder.iterdir())
    ]


def test_market_protocol(market):
    base = market / "Market-1501-v15.09.15"
    assert sorted(p.name for p in market.iterdir()) == ["Market-1501-v15.09.15", CONFIG_FILE]
    train, query = _by_name(base / "bounding_box_train"), _by_name(base / "query")
    gallery = _by_name(base / "bounding_box_test")
    people = [row for row in gallery if row[0] > 0]
    train_ids, test_ids = {r[0] for r in train}, {r[0] for r in people}
    assert len(train_ids) == len(test_ids) == 5 and not train_ids & test_ids
    # every identity in every camera, images_per_camera times: the camera cannot tell who it is
    per_id_cam: dict[tuple[int, int], int] = defaultdict(int)
    for pid, cam, _ in train + query + people:
        per_id_cam[(pid, cam)] += 1
    assert set(per_id_cam) == {(p, c) for p in train_ids | test_ids for c in range(1, 5)}
    assert set(per_id_cam.values()) == {2}
    # one query per (test id, camera) in half the cameras
    assert len(query) == 5 * 2 and {r[0] for r in query} == test_ids
    assert len({(r[0], r[1]) for r in query}) == len(query)
    assert sum(r[0] == -1 for r in gallery) == 20 and sum(r[0] == 0 for r in gallery) == 20
    assert all(r[2].endswith(".jpg") for r in train + query + gallery)
    with Image.open(base / "query" / query[0][2]) as image:
        assert image.size == (16, 32) and image.mode == "RGB"


def test_saved_config_says_how_it_was_made(market):
    saved = json.loads((market / CONFIG_FILE).read_text())
    assert saved["config"]["seed"] == 11 and saved["config"]["size"] == [32, 16]
    assert saved["layout"] == "market1501" and saved["data_folder"] == "Market-1501-v15.09.15"
    assert saved["counts"] == {
        "gallery": 30,
        "gallery_distractor": 20,
        "gallery_junk": 20,
        "query": 10,
        "train": 40,
    }


def test_same_seed_same_bytes_other_seed_other_bytes(market, tmp_path):
    again = synthesize(tmp_path / "again", CONFIG)
    assert _digests(again) == _digests(market)
    other = synthesize(tmp_path / "other", SynthConfig(**{**CONFIG.__dict__, "seed": 12}))
    first, second = _digests(market), _digests(other)
    assert first[CONFIG_FILE] != second[CONFIG_FILE]
    shared = set(first) & set(second)
    assert all(first[k] != second[k] for k in shared)  # names may repeat, pixels never do


def test_pictures_of_one_identity_vary(market):
    base = market / "Market-1501-v15.09.15" / "bounding_box_train"
    files = sorted(base.iterdir())
    pid = files[0].name.split("_")[0]
    same = [np.asarray(Image.open(p), np.float32) for p in files if p.name.startswith(pid)]
    assert len(same) == 8
    assert min(np.abs(a - b).mean() for a, b in itertools.pairwise(same)) > 3.0


def test_replaces_its_own_output_and_refuses_other_folders(tmp_path):
    small = SynthConfig(ids=2, cameras=2, images_per_camera=1, size=(16, 8), junk=0, distractors=0)
    out = synthesize(tmp_path / "data", small)
    (out / "Market-1501-v15.09.15" / "query" / "stale.jpg").write_bytes(b"x")
    synthesize(out, small)
    assert not (out / "Market-1501-v15.09.15" / "query" / "stale.jpg").exists()
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    with pytest.raises(KdasError, match=r"is not empty and was not made by `kdas data synth`"):
        synthesize(precious, small)
    assert (precious / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"ids": 1}, r"ids must be at least 2"),
        ({"cameras": 7}, r"market1501 has 2\.\.6 cameras, got cameras=7"),
        ({"layout": "cuhk03", "cameras": 3}, r"cuhk03 has exactly 2 cameras"),
        ({"size": (8, 8)}, r"size must be at least 16x8"),
        ({"query_cameras": 5, "cameras": 4}, r"query_cameras must be 1\.\.4"),
        ({"seed": -1}, r"seed must be >= 0"),
    ],
)
def test_bad_configs_are_refused_before_writing(tmp_path, changes, message):
    with pytest.raises(KdasError, match=message):
        synthesize(tmp_path / "x", SynthConfig(**changes))
    assert not (tmp_path / "x").exists()


def test_layout_defaults_for_cameras():
    assert SynthConfig().num_cameras == 6 and SynthConfig().num_query_cameras == 3
    assert SynthConfig(layout="cuhk03").num_cameras == 2
    assert SynthConfig(layout="msmt17").num_cameras == 6


def test_msmt17_names_and_lists(tmp_path):
    config = SynthConfig(ids=6, cameras=3, images_per_camera=2, size=(32, 16), layout="msmt17")
    base = synthesize(tmp_path / "ms", config) / "MSMT17_V1"
    lines = {
        split: (base / f"list_{split}.txt").read_text().splitlines()
        for split in ("train", "val", "query", "gallery")
    }
    assert sum(len(v) for v in lines.values()) == 6 * 3 * 2
    assert len(lines["val"]) == 1  # 7% of 18 train images, at least one
    for split, entries in lines.items():
        folder = base / ("train" if split in ("train", "val") else "test")
        for line in entries:
            relative, pid = line.split(" ")
            name = relative.split("/")[1]
            fields = name[:-4].split("_")
            assert relative.split("/")[0] == f"{int(pid):04d}" == fields[0]
            assert 1 <= int(fields[2]) <= 3 and (folder / relative).is_file()
    # train and test ids are numbered separately from 0, as in MSMT17
    assert {int(x.split(" ")[1]) for x in lines["train"] + lines["val"]} == {0, 1, 2}
    assert {int(x.split(" ")[1]) for x in lines["gallery"]} == {0, 1, 2}
