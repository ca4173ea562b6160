"""Which pictures a synthetic data set holds and where each goes: the protocol and the names.

The protocol mirrors Market-1501: half the identities train, half test; for each test id one
picture per camera in some cameras is a query, the rest is gallery. The names and folders are
exactly those of the chosen real data set, so each loader reads files in its own layout.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from kdas.data.synthetic.config import SynthConfig
from kdas.data.synthetic.render import Crop

DATA_FOLDER = {
    "market1501": "Market-1501-v15.09.15",
    "dukemtmc": "DukeMTMC-reID",
    "cuhk03": "cuhk03-np",
    "msmt17": "MSMT17_V1",
}
MARKET_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
# The largest identity number each real data set uses, so synthetic numbers look alike.
REAL_MAX_PID = {"market1501": 1501, "dukemtmc": 7140, "cuhk03": 1467}
MSMT_DATES = ("0113", "0114", "0302", "0303")
MSMT_SLOTS = ("morning", "noon", "afternoon")

# Namespaces of the seeds: identities, cameras, pictures, the plan itself, file names, and the
# pictures of junk and distractors.
SEED_IDENTITY, SEED_CAMERA, SEED_PICTURE, SEED_PLAN, SEED_NAME = 1, 2, 3, 4, 5
SEED_JUNK, SEED_DISTRACTOR = 6, 7


@dataclass(frozen=True)
class Shot:
    """One picture to draw and write."""

    split: str  # train | val | query | gallery
    kind: str  # person | junk | distractor
    identity: int | None  # index into the identity table; None: background only
    pid: int  # the identity number written in the name (-1 junk, 0 a Market distractor)
    cam: int  # 1-based camera
    key: tuple[int, ...]  # seeds this picture's Generator
    crop: Crop = field(default_factory=Crop)


@dataclass
class Plan:
    """All shots with their paths (relative to the output folder), plus list files to write."""

    shots: list[Shot]
    paths: dict[str, list[str]]  # variant ("" when the layout has one) -> path per shot
    lists: dict[str, str] = field(default_factory=dict)  # relative path -> text


def _bad_box(rng: np.random.Generator) -> Crop:
    """A box that cuts the person: what Market-1501 marks junk, or a partial false detection."""
    side = 1.0 if rng.random() < 0.5 else -1.0
    return Crop(
        scale=float(rng.uniform(1.2, 1.7)),
        dx=side * float(rng.uniform(0.25, 0.45)),
        dy=float(rng.uniform(-0.15, 0.15)),
    )


def _pid_numbers(config: SynthConfig, count: int, rng: np.random.Generator) -> list[int]:
    """Distinct identity numbers in the real data set's range, in random order."""
    top = REAL_MAX_PID[config.layout] if count <= REAL_MAX_PID[config.layout] else 9998
    return [int(v) + 1 for v in rng.choice(top, size=count, replace=False)]


def _person_shots(
    config: SynthConfig,
    identity: int,
    pid: int,
    cam: int,
    split: str = "gallery",
    query_j: int = -1,
) -> list[Shot]:
    """The `images_per_camera` pictures of one identity in one camera; picture `query_j` is a
    query, the others are in `split`."""
    return [
        Shot("query" if j == query_j else split, "person", identity, pid, cam,
             (config.seed, SEED_PICTURE, identity, cam, j))
        for j in range(config.images_per_camera)
    ]  # fmt: skip


def _test_shots(
    config: SynthConfig, test_ids: list[int], pid: dict[int, int], rng: np.random.Generator
) -> list[Shot]:
    """Every test identity in every camera, one picture in each of its query cameras a query."""
    shots = []
    for identity in test_ids:
        picked = rng.choice(config.num_cameras, size=config.num_query_cameras, replace=False)
        query_cams = {int(c) + 1 for c in picked}
        for cam in range(1, config.num_cameras + 1):
            query_j = int(rng.integers(config.images_per_camera)) if cam in query_cams else -1
            shots += _person_shots(config, identity, pid[identity], cam, query_j=query_j)
    return shots


def _mark_val(shots: list[Shot], rng: np.random.Generator) -> None:
    """MSMT17's list_val: a slice of the train pictures (7% in MSMT17)."""
    train_at = [n for n, s in enumerate(shots) if s.split == "train"]
    count = max(1, round(0.07 * len(train_at)))
    for n in rng.choice(train_at, size=count, replace=False):
        shots[int(n)] = replace(shots[int(n)], split="val")


def _market_extras(
    config: SynthConfig, test_ids: list[int], rng: np.random.Generator
) -> list[Shot]:
    """Market-1501's junk (-1, a bad box of a test identity) and distractors (0000)."""
    shots = []
    cameras = config.num_cameras
    for k in range(config.junk):
        identity = test_ids[int(rng.integers(len(test_ids)))]
        cam = int(rng.integers(cameras)) + 1
        key = (config.seed, SEED_JUNK, k)
        shots.append(Shot("gallery", "junk", identity, -1, cam, key, _bad_box(rng)))
    for k in range(config.distractors):
        cam = int(rng.integers(cameras)) + 1
        key = (config.seed, SEED_DISTRACTOR, k)
        if rng.random() < 0.5:
            shots.append(Shot("gallery", "distractor", None, 0, cam, key))
        else:  # part of a passer-by who is none of the identities
            stranger = config.ids + k
            shots.append(Shot("gallery", "distractor", stranger, 0, cam, key, _bad_box(rng)))
    return shots


def make_shots(config: SynthConfig) -> list[Shot]:
    """The protocol: every picture with its split, identity number and camera."""
    rng = np.random.default_rng([config.seed, SEED_PLAN])
    cameras, per_cam = config.num_cameras, config.images_per_camera
    order = rng.permutation(config.ids)
    train_ids = sorted(int(i) for i in order[: config.ids // 2])
    test_ids = sorted(int(i) for i in order[config.ids // 2 :])
    duke_extra = -(-config.distractors // per_cam) if config.layout == "dukemtmc" else 0

    if config.layout == "msmt17":  # train and test ids are numbered separately, from 0
        pid = {i: n for n, i in enumerate(train_ids)} | {i: n for n, i in enumerate(test_ids)}
    else:
        numbers = _pid_numbers(config, config.ids + duke_extra, rng)
        pid = dict(enumerate(numbers))

    shots: list[Shot] = []
    for identity in train_ids:
        for cam in range(1, cameras + 1):
            shots += _person_shots(config, identity, pid[identity], cam, split="train")
    shots += _test_shots(config, test_ids, pid, rng)
    if config.layout == "msmt17":
        _mark_val(shots, rng)
    if config.layout == "market1501":
        shots += _market_extras(config, test_ids, rng)
    for n in range(duke_extra):  # DukeMTMC-reID's gallery-only identities
        identity = config.ids + n
        cam = int(rng.integers(cameras)) + 1
        shots += _person_shots(config, identity, pid[identity], cam)
    return shots


def detected_crop(shot: Shot) -> Crop:
    """CUHK03 'detected' boxes: the same picture as 'labeled' but a detector's misaligned box."""
    rng = np.random.default_rng([*shot.key, 99])
    return Crop(
        scale=shot.crop.scale * float(rng.uniform(0.9, 1.12)),
        dx=shot.crop.dx + float(rng.uniform(-0.1, 0.1)),
        dy=shot.crop.dy + float(rng.uniform(-0.06, 0.06)),
    )


def _unique(name_of, used: set[str], start: int) -> str:
    frame = start
    while (name := name_of(frame)) in used:
        frame += 1
    used.add(name)
    return name


def _market_path(shot: Shot, used: set[str]) -> str:
    rng = np.random.default_rng([*shot.key, SEED_NAME])
    seq, box = int(rng.integers(1, 7)), int(rng.integers(0, 9))
    label = "-1" if shot.pid == -1 else f"{shot.pid:04d}"

    def name(frame: int) -> str:
        return f"{label}_c{shot.cam}s{seq}_{frame:06d}_{box:02d}.jpg"

    folder = MARKET_FOLDERS[shot.split]
    return f"{folder}/{_unique(name, used, int(rng.integers(0, 990_000)))}"


def _duke_path(shot: Shot, used: set[str]) -> str:
    rng = np.random.default_rng([*shot.key, SEED_NAME])

    def name(frame: int) -> str:
        return f"{shot.pid:04d}_c{shot.cam}_f{frame:07d}.jpg"

    folder = MARKET_FOLDERS[shot.split]
    return f"{folder}/{_unique(name, used, int(rng.integers(0, 9_000_000)))}"


def make_plan(config: SynthConfig) -> Plan:
    """Shots plus their file names and folders in the layout of `config.layout`."""
    shots = make_shots(config)
    root = DATA_FOLDER[config.layout]
    used: set[str] = set()
    if config.layout == "market1501":
        return Plan(shots, {"": [f"{root}/{_market_path(s, used)}" for s in shots]})
    if config.layout == "dukemtmc":
        return Plan(shots, {"": [f"{root}/{_duke_path(s, used)}" for s in shots]})
    if config.layout == "cuhk03":
        counter: dict[int, int] = {}
        names = []
        for shot in shots:
            counter[shot.pid] = counter.get(shot.pid, 0) + 1
            name = f"{shot.pid:04d}_c{shot.cam}_{counter[shot.pid]}.png"
            names.append(f"{MARKET_FOLDERS[shot.split]}/{name}")
        paths = {v: [f"{root}/{v}/{n}" for n in names] for v in ("labeled", "detected")}
        return Plan(shots, paths)
    return _msmt_plan(shots, root)


def _msmt_plan(shots: list[Shot], root: str) -> Plan:
    paths, lines = [], {"train": [], "val": [], "query": [], "gallery": []}
    counter: dict[tuple[str, int], int] = {}
    for shot in shots:
        group = "train" if shot.split in ("train", "val") else "test"
        index = counter.get((group, shot.pid), 0)
        counter[(group, shot.pid)] = index + 1
        rng = np.random.default_rng([*shot.key, SEED_NAME])
        date, slot = MSMT_DATES[int(rng.integers(4))], MSMT_SLOTS[int(rng.integers(3))]
        frame, box = int(rng.integers(0, 10_000)), int(rng.integers(0, 4))
        name = f"{shot.pid:04d}_{index:03d}_{shot.cam:02d}_{date}{slot}_{frame:04d}_{box}.jpg"
        relative = f"{shot.pid:04d}/{name}"
        paths.append(f"{root}/{group}/{relative}")
        lines[shot.split].append(f"{relative} {shot.pid}")
    lists = {
        f"{root}/list_{split}.txt": "".join(line + "\n" for line in sorted(entries))
        for split, entries in lines.items()
    }
    return Plan(shots, {"": paths}, lists)
