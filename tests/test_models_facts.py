"""Parameter and FLOP counts against hand computations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdas.models.facts import count_flops, count_parameters
from kdas.models.head import ReIDModel
from kdas.models.spec import SupernetArch

pytestmark = pytest.mark.usefixtures("one_thread")


def _plain_net() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1, bias=False),
        nn.ReLU(),
        nn.Conv2d(8, 4, 3, stride=2, padding=1),
        nn.BatchNorm2d(4),
        nn.Conv2d(4, 4, 3, padding=1, groups=4, bias=False),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )


def test_flops_of_a_plain_conv_net_match_a_hand_count() -> None:
    H, W = 16, 12
    macs = (
        H * W * 8 * 3 * 9  # conv 3->8 at 16x12
        + (H // 2) * (W // 2) * 4 * 8 * 9  # conv 8->4 stride 2 at 8x6
        + (H // 2) * (W // 2) * 4 * 9  # depthwise 3x3 at 8x6
        + 4 * 10  # linear
    )
    net = _plain_net().train()
    assert count_flops(net, input_size=(H, W)) == 2 * macs
    assert net.training  # the caller's mode is restored


def test_parameter_counts_split_backbone_and_head() -> None:
    backbone = nn.Sequential(nn.Conv2d(3, 16, 3, bias=False), nn.BatchNorm2d(16))
    model = ReIDModel(backbone, feature_channels=16, num_classes=7)
    counts = count_parameters(model)
    assert counts["backbone"] == 3 * 16 * 9 + 2 * 16
    assert counts["head"] == 2 * 16 + 16 * 7  # BNNeck weight + bias, classifier
    assert counts["other"] == 0
    assert counts["total"] == counts["backbone"] + counts["head"]
    assert counts["trainable"] == counts["total"] - 16  # the BNNeck bias is frozen


def test_supernet_alpha_counted_outside_backbone_and_head() -> None:
    from kdas.models.supernet import Supernet

    arch = SupernetArch(C=2, layers=3, reduction_positions=(1,))
    net = Supernet(3, arch)
    counts = count_parameters(net)
    assert counts["other"] == 2 * 14 * 7
    assert counts["total"] == counts["backbone"] + counts["head"] + counts["other"]
    # In eval mode the head stops at the BNNeck: the classifier is not counted.
    flops_3 = count_flops(net, input_size=(64, 32))
    torch.manual_seed(0)
    wide_head = Supernet(300, arch)
    assert count_flops(wide_head, input_size=(64, 32)) == flops_3
