"""The Re-ID head every kdas model shares: pool -> f -> BNNeck -> bias-free classifier.

One head means teacher, supernet and student have the same contract: training forward gives
`(logits, f)` (f feeds the triplet loss, logits the CE / distillation loss), eval forward gives
the BNNeck feature, which is what retrieval uses.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class ReIDHead(nn.Module):
    def __init__(self, in_channels: int, num_classes: int) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.num_classes = num_classes
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.bnneck = nn.BatchNorm1d(in_channels)
        self.bnneck.bias.requires_grad_(False)  # BNNeck: a shift would only move every feature
        self.classifier = nn.Linear(in_channels, num_classes, bias=False)
        nn.init.ones_(self.bnneck.weight)
        nn.init.zeros_(self.bnneck.bias)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def logits(self, feature_map: torch.Tensor) -> torch.Tensor:
        """Class logits in the current mode; a teacher in eval mode gives its soft targets here."""
        return self.classifier(self.bnneck(self.pool(feature_map).flatten(1)))

    def forward(
        self, feature_map: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        f = self.pool(feature_map).flatten(1)
        neck = self.bnneck(f)
        if not self.training:
            return neck
        return self.classifier(neck), f


class ReIDModel(nn.Module):
    """A backbone producing a feature map, followed by the shared `ReIDHead`.

    `forward_features` / `forward_head` are split (as in timm) so export, distillation and
    feature extraction take the part they need without rewriting forward.
    """

    def __init__(self, backbone: nn.Module, feature_channels: int, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = ReIDHead(feature_channels, num_classes)

    @property
    def embedding_dim(self) -> int:
        return self.head.in_channels

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)

    def forward_head(
        self, feature_map: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        return self.head(feature_map)

    def forward(self, x: torch.Tensor, with_map: bool = False) -> Any:
        """`with_map` (training): `(logits, f, feature_map)`, for feature-map distillation; it
        is an argument, not a second method, so a DistributedDataParallel wrapper still runs it."""
        feature_map = self.forward_features(x)
        out = self.forward_head(feature_map)
        if with_map and self.training:
            return (*out, feature_map)
        return out

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """Logits whatever the mode: how distillation reads an eval-mode teacher."""
        return self.head.logits(self.forward_features(x))

    def classify_with_map(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and the last feature map in one pass (a teacher distilling both)."""
        feature_map = self.forward_features(x)
        return self.head.logits(feature_map), feature_map
