"""Each layout on files in its own on-disk layout: counts, ids, cameras, relabelling, errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kdas.data.layouts import LAYOUTS, layout_options, load_dataset
from kdas.data.synthetic import SynthConfig, synthesize
from kdas.errors import KdasError

SMALL = {"ids": 8, "images_per_camera": 2, "size": (32, 16), "seed": 3}


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory):
    """One small synthetic data set per layout, made once for this file (copied before edits)."""
    roots = {}
    for layout in ("market1501", "dukemtmc", "cuhk03", "msmt17"):
        out = tmp_path_factory.mktemp(layout)
        roots[layout] = synthesize(out, SynthConfig(layout=layout, **SMALL))
    return roots


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "copy"
    shutil.copytree(src, dst)
    return dst


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.suffix in (".jpg", ".png"))


def _market_expected(folder: Path) -> set[tuple[str, int, int]]:
    """(file name, pid, 0-based camid) of the real people in a folder, read by splitting the
    names by hand rather than with the layout's regex."""
    rows = set()
    for name in _names(folder):
        pid_text, cam_text = name.split("_")[:2]
        if int(pid_text) > 0:
            rows.add((name, int(pid_text), int(cam_text[1]) - 1))
    return rows


def _rows(records) -> set[tuple[str, int, int]]:
    return {(Path(r.path).name, r.pid, r.camid) for r in records}


def _relabel_reference(folder: Path) -> dict[str, int]:
    """File name -> expected class: the sorted original ids numbered from 0."""
    pids = {name: int(name.split("_")[0]) for name in _names(folder)}
    pids = {n: p for n, p in pids.items() if p > 0}
    order = {pid: i for i, pid in enumerate(sorted(set(pids.values())))}
    return {n: order[p] for n, p in pids.items()}


def test_registry_lists_the_five_layouts_and_their_options():
    assert set(LAYOUTS) == {"market1501", "dukemtmc", "cuhk03", "msmt17", "folder"}
    assert layout_options("market1501") == {"include_distractors": False}
    assert layout_options("cuhk03") == {"variant": "labeled"}
    assert layout_options("msmt17") == {"merge_val": True}
    assert layout_options("folder") == {}


def _load_at(made, layout: str, folder: str, sub: bool):
    """(splits, data set folder): `layout` loaded from its own `folder` (sub) or the one above,
    which must find the same folder."""
    base = made[layout] / folder
    splits = load_dataset(base if sub else made[layout], layout)
    assert splits.root == str(base)
    return splits, base


@pytest.mark.parametrize("sub", [False, True])
def test_market1501_records_match_the_files(made, sub):
    splits, base = _load_at(made, "market1501", "Market-1501-v15.09.15", sub)
    train_names = _relabel_reference(base / "bounding_box_train")
    assert {Path(r.path).name: r.pid for r in splits.train} == train_names
    assert sorted({r.pid for r in splits.train}) == list(range(4))
    # query and gallery keep the original ids; junk (-1) dropped, distractors (0000) kept
    assert _rows(splits.query) == _market_expected(base / "query")
    gallery_files = _names(base / "bounding_box_test")
    junk = [n for n in gallery_files if n.startswith("-1_")]
    distractors = [n for n in gallery_files if n.startswith("0000_")]
    assert len(junk) == 20 and len(distractors) == 20
    assert len(splits.gallery) == len(gallery_files) - len(junk)
    assert sum(r.pid == 0 for r in splits.gallery) == len(distractors)
    assert not any(r.pid == -1 for r in (*splits.train, *splits.query, *splits.gallery))
    assert splits.dropped == {"gallery_junk": 20}
    cams = {int(n.split("_")[1][1]) - 1 for n in gallery_files}
    assert {r.camid for r in splits.gallery} == cams == set(range(6))
    # the records list is sorted by file name, per split
    assert [r.path for r in splits.gallery] == sorted(r.path for r in splits.gallery)
    assert splits.warnings == []


def test_market1501_distractor_set_joins_the_gallery_as_pid_0(made, tmp_path):
    root = _copy(made["market1501"], tmp_path)
    base = root / "Market-1501-v15.09.15"
    with pytest.raises(KdasError, match=r"include_distractors needs .*images/"):
        load_dataset(root, "market1501", include_distractors=True)
    (base / "images").mkdir()
    source = sorted((base / "query").iterdir())[0]
    for name in ("0000_c1s1_000001_00.jpg", "0123_c6s2_000002_01.jpg"):
        shutil.copy(source, base / "images" / name)
    plain = load_dataset(root, "market1501")
    extended = load_dataset(root, "market1501", include_distractors=True)
    added = extended.gallery[len(plain.gallery) :]
    assert [(Path(r.path).name, r.pid, r.camid) for r in added] == [
        ("0000_c1s1_000001_00.jpg", 0, 0),
        ("0123_c6s2_000002_01.jpg", 0, 5),
    ]


def test_market1501_handmade_names_relabel_and_skip_non_images(tmp_path):
    root = tmp_path / "0001_c5"  # a folder name that looks like an image name: never parsed
    files = {
        "bounding_box_train": [
            "0007_c1s1_000100_01.jpg",
            "0002_c2s1_000200_01.jpg",
            "0005_c3s2_000300_02.jpg",
            "0002_c4s1_000400_01.jpg",
        ],
        "query": ["0010_c1s1_000500_00.jpg", "0011_c2s1_000600_00.jpg", "-1_c2s1_000601_00.jpg"],
        "bounding_box_test": [
            "0010_c2s1_000700_01.jpg",
            "0011_c2s1_000800_01.jpg",
            "0000_c3s1_000900_01.jpg",
            "-1_c1s1_001000_01.jpg",
        ],
    }
    for folder, names in files.items():
        (root / folder).mkdir(parents=True)
        for name in names:
            (root / folder / name).write_bytes(b"x")
    (root / "bounding_box_train" / "Thumbs.db").write_bytes(b"x")
    (root / "bounding_box_train" / "._0002_c1s1_000000_00.jpg").write_bytes(b"x")
    splits = load_dataset(root, "market1501")
    assert [(Path(r.path).name, r.pid, r.camid) for r in splits.train] == [
        ("0002_c2s1_000200_01.jpg", 0, 1),
        ("0002_c4s1_000400_01.jpg", 0, 3),
        ("0005_c3s2_000300_02.jpg", 1, 2),
        ("0007_c1s1_000100_01.jpg", 2, 0),
    ]
    assert [(r.pid, r.camid) for r in splits.query] == [(10, 0), (11, 1)]
    assert splits.dropped == {"gallery_junk": 1, "query_junk": 1}
    # id 11 is only in the gallery's camera of its query: it cannot be scored
    assert len(splits.warnings) == 1
    assert "1 query images have gallery matches only in their own camera" in splits.warnings[0]


def test_query_ids_missing_from_gallery_are_counted_in_a_warning(made, tmp_path):
    root = _copy(made["market1501"], tmp_path)
    base = root / "Market-1501-v15.09.15"
    query_ids = sorted({n.split("_")[0] for n in _names(base / "query")})
    for name in _names(base / "bounding_box_test"):
        if name.split("_")[0] == query_ids[0]:
            (base / "bounding_box_test" / name).unlink()
    images = sum(n.startswith(query_ids[0] + "_") for n in _names(base / "query"))
    splits = load_dataset(root, "market1501")
    assert splits.warnings == [
        f"1 of {len(query_ids)} query ids ({images} query images) have no image in the gallery "
        f"and cannot be evaluated (e.g. id {int(query_ids[0])})"
    ]


@pytest.mark.parametrize("sub", [False, True])
def test_dukemtmc_records_match_the_files(made, sub):
    splits, base = _load_at(made, "dukemtmc", "DukeMTMC-reID", sub)
    assert splits.name == "dukemtmc"
    assert {Path(r.path).name: r.pid for r in splits.train} == _relabel_reference(
        base / "bounding_box_train"
    )
    assert _rows(splits.query) == _market_expected(base / "query")
    assert _rows(splits.gallery) == _market_expected(base / "bounding_box_test")
    # Duke's distractors are gallery-only identities, not pid 0
    query_ids, gallery_ids = {r.pid for r in splits.query}, {r.pid for r in splits.gallery}
    assert query_ids < gallery_ids and 0 not in gallery_ids
    assert len(gallery_ids - query_ids) == 10  # ceil(20 distractor images / 2 per id)
    assert {r.camid for r in splits.gallery} <= set(range(6)) and splits.dropped == {}


@pytest.mark.parametrize("variant", ["labeled", "detected"])
@pytest.mark.parametrize("level", ["out", "np", "variant"])
def test_cuhk03_variants_and_root_levels(made, variant, level):
    out = made["cuhk03"]
    root = {"out": out, "np": out / "cuhk03-np", "variant": out / "cuhk03-np" / variant}[level]
    splits = load_dataset(root, "cuhk03", variant=variant)
    base = out / "cuhk03-np" / variant
    assert splits.name == f"cuhk03-{variant}" and splits.root == str(base)
    names = _names(base / "bounding_box_train")
    assert all(n.endswith(".png") for n in names)
    assert {Path(r.path).name: r.pid for r in splits.train} == _relabel_reference(
        base / "bounding_box_train"
    )
    assert _rows(splits.gallery) == _market_expected(base / "bounding_box_test")
    assert {r.camid for r in (*splits.train, *splits.query, *splits.gallery)} == {0, 1}


def test_cuhk03_variants_hold_the_same_names_but_different_pixels(made):
    base = made["cuhk03"] / "cuhk03-np"
    labeled, detected = base / "labeled" / "query", base / "detected" / "query"
    assert _names(labeled) == _names(detected)
    first = _names(labeled)[0]
    assert (labeled / first).read_bytes() != (detected / first).read_bytes()


def test_cuhk03_refuses_the_other_variant_folder(made):
    with pytest.raises(KdasError, match=r"is the detected variant but variant='labeled'"):
        load_dataset(made["cuhk03"] / "cuhk03-np" / "detected", "cuhk03")
    with pytest.raises(KdasError, match=r"variant 'both' is not one of"):
        load_dataset(made["cuhk03"], "cuhk03", variant="both")


def _list_rows(path: Path) -> list[tuple[str, int]]:
    rows = []
    for line in path.read_text().splitlines():
        relative, pid = line.split(" ")
        rows.append((relative.split("/")[-1], int(pid)))
    return rows


@pytest.mark.parametrize("sub", [False, True])
def test_msmt17_v1_lists(made, sub):
    splits, base = _load_at(made, "msmt17", "MSMT17_V1", sub)
    assert splits.name == "msmt17-v1"
    train_rows = _list_rows(base / "list_train.txt") + _list_rows(base / "list_val.txt")
    order = {pid: i for i, pid in enumerate(sorted({p for _, p in train_rows}))}
    assert sorted((Path(r.path).name, r.pid) for r in splits.train) == sorted(
        (n, order[p]) for n, p in train_rows
    )
    # camera = third field of the name, 1-based; test ids shifted by one so 0 stays free
    query_rows = _list_rows(base / "list_query.txt")
    assert sorted(_rows(splits.query)) == sorted(
        (n, p + 1, int(n.split("_")[2]) - 1) for n, p in query_rows
    )
    assert min(r.pid for r in splits.gallery) == 1
    assert all(Path(r.path).parent.parent.name == "test" for r in splits.gallery)


def test_msmt17_without_val(made):
    base = made["msmt17"] / "MSMT17_V1"
    val = len(_list_rows(base / "list_val.txt"))
    merged = load_dataset(made["msmt17"], "msmt17")
    alone = load_dataset(made["msmt17"], "msmt17", merge_val=False)
    assert val >= 1 and len(merged.train) - len(alone.train) == val
    assert alone.dropped == {"train_val_unused": val}


def test_msmt17_v2_is_detected(made, tmp_path):
    root = _copy(made["msmt17"], tmp_path)
    (root / "MSMT17_V1" / "train").rename(root / "MSMT17_V1" / "mask_train_v2")
    (root / "MSMT17_V1" / "test").rename(root / "MSMT17_V1" / "mask_test_v2")
    (root / "MSMT17_V1").rename(root / "MSMT17_V2")
    splits = load_dataset(root, "msmt17")
    reference = load_dataset(made["msmt17"], "msmt17")
    assert splits.name == "msmt17-v2"
    assert [(r.pid, r.camid) for r in splits.gallery] == [
        (r.pid, r.camid) for r in reference.gallery
    ]
    shutil.copytree(made["msmt17"] / "MSMT17_V1", root / "MSMT17_V1")
    with pytest.raises(KdasError, match="several MSMT17 copies found"):
        load_dataset(root, "msmt17")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not-a-valid-line", r"list_query.txt line 1 is 'not-a-valid-line'"),
        ("0000/0000_000_01_0303morning_0001_0.jpg 0", r"list_query.txt line 1: image .* not found"),
    ],
)
def test_msmt17_list_errors(made, tmp_path, line, message):
    root = _copy(made["msmt17"], tmp_path)
    (root / "MSMT17_V1" / "list_query.txt").write_text(line + "\n")
    with pytest.raises(KdasError, match=message):
        load_dataset(root, "msmt17")


def test_msmt17_list_pid_must_match_the_name(made, tmp_path):
    root = _copy(made["msmt17"], tmp_path)
    query = root / "MSMT17_V1" / "list_query.txt"
    relative, pid = query.read_text().splitlines()[0].split(" ")
    query.write_text(f"{relative} {int(pid) + 1}\n")
    with pytest.raises(KdasError, match=rf"the list says pid {int(pid) + 1} but the file name"):
        load_dataset(root, "msmt17")


def test_folder_layout_reads_custom_names(made, tmp_path):
    base = made["market1501"] / "Market-1501-v15.09.15"
    root = tmp_path / "custom"
    shutil.copytree(base / "bounding_box_train", root / "train")
    shutil.copytree(base / "query", root / "query")
    shutil.copytree(base / "bounding_box_test", root / "gallery")
    shutil.copy(sorted((root / "train").iterdir())[0], root / "train" / "9999_c12_free-form.png")
    splits = load_dataset(root, "folder")
    market = load_dataset(made["market1501"], "market1501")
    assert len(splits.train) == len(market.train) + 1
    assert splits.train[-1].camid == 11 and splits.train[-1].pid == splits.num_train_pids - 1
    assert [(r.pid, r.camid) for r in splits.gallery] == [(r.pid, r.camid) for r in market.gallery]


@pytest.mark.parametrize(
    ("layout", "remove", "message"),
    [
        (
            "market1501",
            "Market-1501-v15.09.15/query",
            r"market1501: no folder query/ in .*"
            r"Market-1501-v15\.09\.15 \(expected ROOT\[/Market-1501-v15\.09\.15\]/"
            r"\{bounding_box_train,bounding_box_test,query\}",
        ),
        ("dukemtmc", "DukeMTMC-reID/bounding_box_test", r"dukemtmc: no folder bounding_box_test/"),
        (
            "cuhk03",
            "cuhk03-np/labeled/bounding_box_train",
            r"cuhk03: no folder bounding_box_train/",
        ),
        ("msmt17", "MSMT17_V1/test", r"msmt17: no MSMT17 train/test folders"),
        ("msmt17", "MSMT17_V1/list_gallery.txt", r"list file .*list_gallery.txt is missing"),
    ],
)
def test_missing_folder_names_it_and_the_expected_tree(made, tmp_path, layout, remove, message):
    root = _copy(made[layout], tmp_path)
    target = root / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(KdasError, match=message):
        load_dataset(root, layout)


def test_folder_layout_names_its_missing_folder(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "query").mkdir()
    with pytest.raises(KdasError, match=r"folder: no folder gallery/ or bounding_box_test/ in"):
        load_dataset(tmp_path, "folder")


@pytest.mark.parametrize(
    ("layout", "folder", "bad"),
    [
        ("market1501", "Market-1501-v15.09.15/bounding_box_train", "0002_c1_000451.jpg"),
        ("market1501", "Market-1501-v15.09.15/query", "0002_c7s1_000451_03.jpg"),
        ("dukemtmc", "DukeMTMC-reID/query", "0005_c2s1_000451_03.jpg"),
        ("cuhk03", "cuhk03-np/labeled/bounding_box_test", "0001_c3_1.png"),
    ],
)
def test_bad_file_name_is_named(made, tmp_path, layout, folder, bad):
    root = _copy(made[layout], tmp_path)
    source = next((root / folder).iterdir())
    shutil.copy(source, root / folder / bad)
    with pytest.raises(KdasError, match=bad.replace(".", r"\.")):
        load_dataset(root, layout)


def test_empty_split_is_an_error(made, tmp_path):
    root = _copy(made["market1501"], tmp_path)
    train = root / "Market-1501-v15.09.15" / "bounding_box_train"
    for path in train.iterdir():
        path.unlink()
    (train / "-1_c1s1_000001_00.jpg").write_bytes(b"x")  # junk only: nothing usable
    with pytest.raises(KdasError, match=r"market1501: the train split is empty"):
        load_dataset(root, "market1501")


def test_bad_root_layout_and_option(tmp_path):
    with pytest.raises(KdasError, match=r"market1501: data set root .*nowhere does not exist"):
        load_dataset(tmp_path / "nowhere", "market1501")
    with pytest.raises(KdasError, match=r"unknown data set layout 'market' \(known: market1501"):
        load_dataset(tmp_path, "market")
    with pytest.raises(KdasError, match=r"layout dukemtmc has no option 'variant'"):
        load_dataset(tmp_path, "dukemtmc", variant="labeled")


def test_tiny_market_fixture_loads(tiny_market):
    splits = load_dataset(tiny_market, "market1501")
    assert (splits.num_train_pids, len(splits.train)) == (8, 8 * 3 * 3)
    assert len(splits.query) == 8  # one query camera (3 // 2) per test id
    assert len(splits.gallery) == 8 * 3 * 3 - 8 + 20  # plus 20 distractors
    assert splits.num_cameras == 3 and splits.warnings == []
