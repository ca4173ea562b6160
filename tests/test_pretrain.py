"""Pre-training the student as a classifier (`kdas pretrain`, paper 4.4) and starting the
Re-ID retraining from it (`kdas train --init`), on a tiny generated ImageNet-layout folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from genotypes import DENSE_OPS, EVERY_OP
from PIL import Image
from safetensors.torch import load_file
from tiny_configs import TINY_ARCH
from typer.testing import CliRunner

from kdas.cli.app import app, main
from kdas.data.imagefolder import ShuffledBatchSampler, scan_image_folder
from kdas.data.transforms import build_eval_transform
from kdas.engine.config import OptimConfig, RunConfig
from kdas.engine.pretrain import ImageFolderConfig, PretrainConfig, PretrainJob, pretrain
from kdas.errors import KdasError
from kdas.models import load
from kdas.models.pretrained import load_init_weights
from kdas.models.spec import StudentArch
from kdas.models.student import StudentNetwork

pytestmark = pytest.mark.usefixtures("one_thread")

COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]  # one per class, so it can learn
EPOCHS = 4
CLASSIFIER = "head.classifier.weight"


def write_images(folder: Path, count: int, colour: tuple[int, int, int], seed: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        noise = rng.normal(0, 30, (24, 12, 3))
        pixels = np.clip(np.array(colour)[None, None] + noise, 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.jpg")


def make_folder(root: Path, train: int = 12, val: int = 4) -> Path:
    for c, colour in enumerate(COLOURS):
        write_images(root / "train" / f"class_{c}", train, colour, seed=c)
        if val:
            write_images(root / "val" / f"class_{c}", val, colour, seed=10 + c)
    return root


@pytest.fixture(scope="module")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_folder(tmp_path_factory.mktemp("imagenet"))


def tiny_config(root: Path, genotype: Path, epochs: int = EPOCHS) -> PretrainConfig:
    return PretrainConfig(
        genotype=str(genotype),
        data=ImageFolderConfig(root=str(root), size=(32, 16), batch_size=6, num_workers=0),
        model=TINY_ARCH,
        optim=OptimConfig(optimizer="sgd", lr=0.1, weight_decay=3e-5),
        run=RunConfig(epochs=epochs, eval_every=1, progress=False, device="cpu", threads=1),
    )


@pytest.fixture(scope="module")
def pretrained(image_folder: Path, genotype_file: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("pretrain") / "pretrain"
    result = pretrain(tiny_config(image_folder, genotype_file), out)
    return out, result


def read_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def test_pretrain_learns_and_writes_an_artifact(pretrained) -> None:
    out, result = pretrained
    log = read_log(out)
    assert [r["epoch"] for r in log] == list(range(EPOCHS))
    assert log[-1]["loss_total"] < log[0]["loss_total"]
    assert result.num_classes == 3 and result.metrics is not None
    assert result.metrics["top1"] > 1 / 3 and result.metrics["images"] == 12  # above chance
    assert all("top1" in r["eval"] for r in log)  # eval_every = 1
    loaded = load(str(out))
    assert loaded.spec.kind == "student" and loaded.model.num_classes == 3
    assert tuple(loaded.spec.input_size) == (32, 16)
    config = json.loads((out / "config.json").read_text())
    assert config["stage"] == "pretrain"
    assert config["classes"] == ["class_0", "class_1", "class_2"]
    assert config["config"]["data"]["batch_size"] == 6
    assert config["config"]["optim"]["optimizer"] == "sgd"
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["val"]["top1"] == pytest.approx(result.metrics["top1"])
    assert metrics["train_images"] == 36 and metrics["val_images"] == 12
    assert (out / "checkpoints" / "last.pt").is_file() and (out / "genotype.json").is_file()
    # the written weights, loaded back, score on val/ what the run reported
    splits = scan_image_folder(config["config"]["data"]["root"])
    transform = build_eval_transform((32, 16))
    images = torch.stack([transform(Image.open(path)) for path, _ in splits.val])
    labels = torch.tensor([label for _, label in splits.val])
    with torch.no_grad():
        top1 = (loaded.model.classify(images).argmax(1) == labels).float().mean()
    assert float(top1) == pytest.approx(result.metrics["top1"])


def test_resume_gives_the_uninterrupted_weights_and_the_guards(
    pretrained, image_folder: Path, genotype_file: Path, tmp_path: Path, monkeypatch
) -> None:
    cfg = tiny_config(image_folder, genotype_file)
    out = tmp_path / "run"
    batches = PretrainJob.batches

    def stop_at_epoch_2(self, epoch):
        if epoch == 2:
            raise RuntimeError("interrupted")
        return batches(self, epoch)

    with monkeypatch.context() as patch:
        patch.setattr(PretrainJob, "batches", stop_at_epoch_2)
        with pytest.raises(RuntimeError, match="interrupted"):
            pretrain(cfg, out)
    assert [r["epoch"] for r in read_log(out)] == [0, 1]
    with pytest.raises(KdasError, match="unfinished run; pass --resume"):
        pretrain(cfg, out)
    pretrain(cfg, out, resume=True)
    assert [r["epoch"] for r in read_log(out)] == list(range(EPOCHS))
    mine, uninterrupted = (
        load_file(out / "model.safetensors"),
        load_file(pretrained[0] / "model.safetensors"),
    )
    assert mine.keys() == uninterrupted.keys()
    assert all(torch.equal(mine[k], uninterrupted[k]) for k in mine)
    with pytest.raises(KdasError, match="already holds a trained model; pass --force"):
        pretrain(cfg, out)
    again = pretrain(tiny_config(image_folder, genotype_file, epochs=1), out, force=True)
    assert again.epochs == 1 and len(read_log(out)) == 1


def test_bad_folders_are_one_line_errors(
    image_folder: Path, genotype_file: Path, tmp_path: Path
) -> None:
    def fails(root: Path, match: str, out: Path | None = None) -> None:
        with pytest.raises(KdasError, match=match) as error:
            pretrain(tiny_config(root, genotype_file), out or tmp_path / "out")
        assert "\n" not in str(error.value)

    fails(tmp_path / "missing", "image folder not found")
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", "has no class folders; expected ROOT/train/<class>")
    (tmp_path / "no_images" / "train" / "cat").mkdir(parents=True)
    (tmp_path / "no_images" / "train" / "cat" / "notes.txt").write_text("not an image")
    fails(tmp_path / "no_images", "hold no images")
    one_empty = make_folder(tmp_path / "one_empty", train=2, val=0)
    (one_empty / "train" / "zebra").mkdir()
    fails(one_empty, r"zebra holds no images \(1 of 4 classes")
    stray = make_folder(tmp_path / "stray", train=2, val=1)
    write_images(stray / "val" / "dog", 1, (0, 0, 0), seed=0)
    fails(stray, "validation class 'dog'")
    (tmp_path / "file_out").write_text("x")
    fails(image_folder, "is a file, not a folder", out=tmp_path / "file_out")
    corrupt = make_folder(tmp_path / "corrupt", train=6, val=0)
    (corrupt / "train" / "class_1" / "000.jpg").write_bytes(b"not a jpeg")
    fails(corrupt, r"cannot read image .*class_1/000\.jpg")
    with pytest.raises(KdasError, match="no genotype given"):
        pretrain(PretrainConfig(), tmp_path / "out")


def test_flat_layout_and_the_sampler(tmp_path: Path) -> None:
    for c, colour in enumerate(COLOURS[::-1]):
        write_images(tmp_path / "flat" / f"k{2 - c}", 2 + c, colour, seed=c)
    splits = scan_image_folder(tmp_path / "flat")  # no train/: ROOT/<class>/* is the train set
    assert splits.classes == ("k0", "k1", "k2") and not splits.has_validation
    assert [label for _, label in splits.train] == [0, 0, 0, 0, 1, 1, 1, 2, 2]
    a = [list(ShuffledBatchSampler(9, 4, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    assert [len(b) for b in a] == [1, 1] and all(len(batch) == 4 for b in a for batch in b)
    assert a == [list(ShuffledBatchSampler(9, 4, seed=1, num_replicas=2, rank=r)) for r in (0, 1)]
    ranks = {i for b in a for batch in b for i, _ in batch}
    assert len(ranks) == 8  # two ranks, disjoint shares of one shuffled pass
    small = ShuffledBatchSampler(3, 8, seed=0)  # fewer images than a batch: drawn again
    (batch,) = list(small)
    assert len(batch) == 8 and {i for i, _ in batch} == {0, 1, 2}


def test_load_init_weights_copies_the_backbone_and_skips_the_classifier(pretrained) -> None:
    out, _ = pretrained
    source = load_file(out / "model.safetensors")
    torch.manual_seed(1)
    student = StudentNetwork(EVERY_OP, num_classes=7, arch=TINY_ARCH)
    classifier = student.state_dict()[CLASSIFIER].clone()
    report = load_init_weights(student, out)
    assert report.skipped == [CLASSIFIER] and report.loaded == len(source) - 1
    state = student.state_dict()
    assert torch.equal(state[CLASSIFIER], classifier)  # 7 identities, not the 3 classes
    assert all(torch.equal(state[k], source[k]) for k in state if k != CLASSIFIER)
    assert "skipped head.classifier.weight" in report.summary()
    # the weights file alone works too
    other = StudentNetwork(EVERY_OP, num_classes=7, arch=TINY_ARCH)
    assert load_init_weights(other, out / "model.safetensors").loaded == report.loaded
    assert load_init_weights(other, "").loaded == 0


def test_load_init_weights_refuses_another_network(pretrained, tmp_path: Path) -> None:
    out, _ = pretrained
    wider = StudentNetwork(EVERY_OP, 7, StudentArch(C=6, layers=3, reduction_positions=(1,)))
    with pytest.raises(KdasError, match=r"does not fit this student .* there vs .* here") as e:
        load_init_weights(wider, out)
    assert "pretrain the same genotype and width" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(KdasError, match="another genotype"):
        load_init_weights(StudentNetwork(DENSE_OPS, 7, TINY_ARCH), out)
    with pytest.raises(KdasError, match=r"not in the student|missing there"):
        load_init_weights(StudentNetwork(DENSE_OPS, 7, TINY_ARCH), out / "model.safetensors")
    (tmp_path / "weights.pt").write_bytes(b"pickle")
    with pytest.raises(KdasError, match="safetensors only"):
        load_init_weights(wider, tmp_path / "weights.pt")
    with pytest.raises(KdasError, match="initial weights not found"):
        load_init_weights(wider, tmp_path / "nothing")
    (tmp_path / "folder").mkdir()
    with pytest.raises(KdasError, match=r"holds no model\.safetensors"):
        load_init_weights(wider, tmp_path / "folder")
    (tmp_path / "bad.safetensors").write_bytes(b"garbage")
    with pytest.raises(KdasError, match="damaged or not safetensors"):
        load_init_weights(wider, tmp_path / "bad.safetensors")


def test_cli_pretrain_and_its_errors(
    image_folder: Path, genotype_file: Path, tmp_path: Path, capsys
) -> None:
    config = tmp_path / "pretrain.toml"
    config.write_text(
        "[data]\nsize = [32, 16]\nbatch_size = 6\nnum_workers = 0\n"
        "[model]\nlayers = 3\nreduction_positions = [1]\n"
        "[run]\nprogress = false\ndevice = 'cpu'\nthreads = 1\n"
    )
    out = tmp_path / "pretrain"
    args = ["pretrain", "--genotype", str(genotype_file), "--data", str(image_folder)]
    args += ["--out", str(out), "--config", str(config), "--channels", "4", "--epochs", "2"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "pretrain: val top-1" in result.output
    saved = json.loads((out / "config.json").read_text())["config"]
    assert saved["model"]["C"] == 4 and saved["run"]["epochs"] == 2
    assert saved["optim"]["lr"] == 0.1  # the classification default
    assert len(read_log(out)) == 2
    with pytest.raises(SystemExit) as exit_info:
        main([*args[:3], "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o")])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: image folder not found")


def test_cli_train_init_starts_from_the_pretrained_backbone(
    pretrained, tiny_market: Path, genotype_file: Path, tmp_path: Path
) -> None:
    out, _ = pretrained
    config = tmp_path / "student.toml"
    config.write_text(  # lr 1e-30: the retrained parameters stay where --init put them
        "[data]\nsize = [32, 16]\np = 4\nk = 2\nbatches_per_epoch = 1\nnum_workers = 0\n"
        "[model]\nC = 4\nlayers = 3\nreduction_positions = [1]\n"
        "[optim]\nlr = 1e-30\n"
        "[run]\nepochs = 1\neval_every = 0\nprogress = false\ndevice = 'cpu'\nthreads = 1\n"
    )
    student = tmp_path / "student"
    main(
        [
            "train", "--genotype", str(genotype_file), "--init", str(out), "--kd", "none",
            "--data", str(tiny_market), "--layout", "market1501", "--out", str(student),
            "--config", str(config),
        ]
    )  # fmt: skip
    assert json.loads((student / "config.json").read_text())["config"]["init"] == str(out)
    trained = load(str(student)).model
    source = load_file(out / "model.safetensors")
    assert trained.num_classes != 3
    params = dict(trained.named_parameters())
    assert all(
        torch.allclose(p, source[k], rtol=0, atol=1e-20)
        for k, p in params.items()
        if k != CLASSIFIER
    )
