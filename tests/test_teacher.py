"""The shared head contract, the ResNet teacher, ImageNet weight loading, model artifacts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save_file

from kdas.errors import KdasError
from kdas.models import load
from kdas.models.artifacts import save_model_artifact
from kdas.models.head import ReIDHead
from kdas.models.spec import ModelSpec, TeacherArch
from kdas.models.teacher import build_teacher


def test_head_contract() -> None:
    head = ReIDHead(16, 5)
    fmap = torch.randn(4, 16, 3, 2)
    head.train()
    logits, f = head(fmap)
    assert logits.shape == (4, 5) and f.shape == (4, 16)
    assert torch.allclose(f, fmap.mean((2, 3)), atol=1e-6)
    head.eval()
    neck = head(fmap)
    expected = (f - head.bnneck.running_mean) / torch.sqrt(head.bnneck.running_var + 1e-5)
    expected = expected * head.bnneck.weight + head.bnneck.bias
    assert torch.allclose(neck, expected, atol=1e-5)
    assert torch.allclose(head.logits(fmap), neck @ head.classifier.weight.t(), atol=1e-6)
    assert not head.bnneck.bias.requires_grad
    assert head.classifier.bias is None


@pytest.mark.parametrize(("last_stride", "expected"), [(1, (4, 2)), (2, (2, 1))])
def test_teacher_last_stride(last_stride: int, expected: tuple[int, int]) -> None:
    teacher = build_teacher(7, "resnet18", last_stride=last_stride)
    fmap = teacher.forward_features(torch.randn(2, 3, 64, 32))
    assert fmap.shape[1:] == (512, *expected)
    teacher.train()
    logits, f = teacher(torch.randn(2, 3, 64, 32))
    assert logits.shape == (2, 7) and f.shape == (2, 512)


def test_resnet50_teacher_is_resnet50() -> None:
    teacher = build_teacher(751, "resnet50")
    trunk_params = sum(p.numel() for p in teacher.backbone.parameters())
    reference = torchvision.models.resnet50(weights=None)
    fc = sum(p.numel() for p in reference.fc.parameters())
    assert trunk_params == sum(p.numel() for p in reference.parameters()) - fc
    assert teacher.embedding_dim == 2048


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_imagenet_weights_round_trip(tmp_path: Path, suffix: str) -> None:
    reference = torchvision.models.resnet18(weights=None)
    with torch.no_grad():
        for p in reference.parameters():
            p.normal_()
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(reference.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    teacher = build_teacher(3, "resnet18", last_stride=2, imagenet_weights=path)
    ours = teacher.backbone.state_dict()
    for key, value in reference.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(ours[key], value), key
    reference.eval()
    teacher.eval()
    x = torch.randn(1, 3, 64, 32)
    trunk = torch.nn.Sequential(*list(reference.children())[:-2])
    assert torch.allclose(teacher.forward_features(x), trunk(x), atol=1e-5)


def test_imagenet_weights_of_other_depth_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(KdasError, match=r"does not fit this teacher: keys .*missing"):
        build_teacher(3, "resnet50", imagenet_weights=path)


def test_bad_weight_files(tmp_path: Path) -> None:
    with pytest.raises(KdasError, match="not found"):
        build_teacher(3, "resnet18", imagenet_weights=tmp_path / "nope.pth")
    truncated = tmp_path / "cut.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), truncated)
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(KdasError, match=r"cut\.pth cannot be read"):
        build_teacher(3, "resnet18", imagenet_weights=truncated)
    not_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_dict)
    with pytest.raises(KdasError, match="not a state dict"):
        build_teacher(3, "resnet18", imagenet_weights=not_dict)


def test_teacher_artifact_round_trip(tmp_path: Path) -> None:
    spec = ModelSpec(
        kind="teacher", num_classes=4, input_size=(64, 32), teacher=TeacherArch("resnet18")
    )
    model = build_teacher(4, "resnet18")
    model.train()
    model(torch.randn(4, 3, 64, 32))  # move BN running stats away from their init
    model.eval()
    save_model_artifact(tmp_path / "teacher", model, spec, "teacher", facts={"note": 1})
    loaded = load(str(tmp_path / "teacher"))
    x = torch.randn(3, 3, 64, 32)
    assert not loaded.model.training
    assert torch.allclose(loaded.model(x), model(x), atol=1e-6)
    assert loaded.spec.input_size == (64, 32)
    assert len(loaded.weights_sha256) == 64


def test_artifact_errors(tmp_path: Path) -> None:
    with pytest.raises(KdasError, match="model folder not found"):
        load(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(KdasError, match=r"config\.json is missing"):
        load(str(tmp_path / "empty"))
    spec = ModelSpec(
        kind="teacher", num_classes=2, input_size=(64, 32), teacher=TeacherArch("resnet18")
    )
    folder = save_model_artifact(tmp_path / "t", build_teacher(2, "resnet18"), spec, "teacher")
    weights = folder / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    with pytest.raises(KdasError, match="damaged"):
        load(str(folder))
