"""The ResNet Re-ID teacher: a torchvision ResNet trunk (no pooling/fc) + the shared head.

Last stride 1 (the Re-ID default) doubles the final feature map (16×8 at 256×128), which the
paper's teacher and most strong Re-ID baselines use.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from torch import nn

from kdas.errors import KdasError
from kdas.models.head import ReIDModel

TEACHER_ARCHS = {
    "resnet18": (torchvision.models.resnet18, 512),
    "resnet34": (torchvision.models.resnet34, 512),
    "resnet50": (torchvision.models.resnet50, 2048),
}


class ResNetTrunk(nn.Module):
    """torchvision ResNet up to layer4; keeps torchvision's parameter names so ImageNet state
    dicts load without renaming."""

    def __init__(self, resnet: torchvision.models.ResNet) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu, self.maxpool = (
            resnet.conv1,
            resnet.bn1,
            resnet.relu,
            resnet.maxpool,
        )
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            resnet.layer1,
            resnet.layer2,
            resnet.layer3,
            resnet.layer4,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _set_last_stride(resnet: torchvision.models.ResNet, stride: int) -> None:
    block = resnet.layer4[0]
    # Bottleneck strides in conv2 (torchvision "ResNet v1.5"), BasicBlock in conv1.
    conv = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
    conv.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict safely: safetensors, or torch.load with weights_only=True."""
    path = Path(path)
    if not path.is_file():
        raise KdasError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:  # truncated or foreign files fail in many ways
            raise KdasError(
                f"cannot read weights {path}: {type(exc).__name__}: {exc}".splitlines()[0]
            ) from None
    from kdas.models.safe_load import load_torch_file

    state = load_torch_file(path, "weights file")
    if isinstance(state, Mapping) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, Mapping) or not all(
        isinstance(v, torch.Tensor) for v in state.values()
    ):
        raise KdasError(
            f"{path} is not a state dict of tensors (a torchvision ResNet .pth expected)"
        )
    return dict(state)


def load_imagenet_weights(trunk: ResNetTrunk, path: str | Path) -> list[str]:
    """Load a torchvision-format ImageNet ResNet state dict into the trunk.

    The classifier (`fc.*`) is expected and ignored. Any other missing or unexpected key, or a
    shape mismatch (e.g. a ResNet-18 file for a ResNet-50 teacher), is one clear error. Returns
    the ignored keys.
    """
    state = read_state_dict(path)
    state = {k.removeprefix("module."): v for k, v in state.items()}
    ignored = sorted(k for k in state if k.startswith("fc."))
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    own = trunk.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        if mismatched:
            k = mismatched[0]
            parts.append(
                f"{len(mismatched)} with other shapes (e.g. {k}: file {tuple(state[k].shape)}, "
                f"model {tuple(own[k].shape)})"
            )
        raise KdasError(
            f"{path} does not fit this teacher: keys {'; '.join(parts)}; "
            "pass a torchvision state dict of the same ResNet depth"
        )
    trunk.load_state_dict(state, strict=True)
    return ignored


def build_teacher(
    num_classes: int,
    arch: str = "resnet50",
    last_stride: int = 1,
    imagenet_weights: str | Path | None = None,
    zero_init_residual: bool = False,
) -> ReIDModel:
    """`zero_init_residual`: the last BN of every residual block starts at γ = 0, so each block
    starts as an identity (Goyal et al. 2017). Off by default: on the demo recipe it cost both
    ResNet-18 and ResNet-50 trained from scratch 8-43 mAP points (docs/benchmarks.md).
    ImageNet weights overwrite it."""
    if arch not in TEACHER_ARCHS:
        raise KdasError(f"unknown teacher arch {arch!r} (known: {', '.join(TEACHER_ARCHS)})")
    if last_stride not in (1, 2):
        raise KdasError(f"last_stride must be 1 or 2, got {last_stride}")
    constructor, channels = TEACHER_ARCHS[arch]
    resnet = constructor(weights=None, zero_init_residual=zero_init_residual)
    _set_last_stride(resnet, last_stride)
    trunk = ResNetTrunk(resnet)
    if imagenet_weights:
        load_imagenet_weights(trunk, imagenet_weights)
    return ReIDModel(trunk, channels, num_classes)
