"""Cells: one wiring shared by the searched cell (mixed ops) and the static cell (a genotype).

A cell takes the outputs of the two previous cells, preprocesses each to C channels (ReLU-1x1
conv-BN, or a factorized reduce when the previous cell halved the resolution, so both inputs
have the same size), computes `steps` intermediate nodes, each a sum of edges from earlier
states, and concatenates the states listed in `concat`. In a reduction cell the edges leaving
the two inputs have stride 2. The subclasses only say what the edges of a node are.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import torch
from torch import nn

from kdas.models.blocks import FactorizedReduce, ReLUConvBN
from kdas.models.genotype import edge_list
from kdas.models.ops import SKIP, build_op, is_pooling


class MixedOp(nn.Module):
    """One supernet edge: every primitive, summed with its softmax(α) weight.

    Pooling has no parameters to adapt its scale, so (as in DARTS) it is followed by a
    non-affine BN to put it on the footing of the conv ops.
    """

    def __init__(self, C: int, stride: int, primitives: Sequence[str]) -> None:
        super().__init__()
        self.primitives = tuple(primitives)
        ops = []
        for name in self.primitives:
            op = build_op(name, C, stride, affine=False)
            if is_pooling(op):
                op = nn.Sequential(op, nn.BatchNorm2d(C, affine=False))
            ops.append(op)
        self.ops = nn.ModuleList(ops)

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = weights[0] * self.ops[0](x)
        for k in range(1, len(self.ops)):
            out = out + weights[k] * self.ops[k](x)
        return out


def drop_path(x: torch.Tensor, drop_prob: float) -> torch.Tensor:
    """Zero a whole edge output for a random subset of the batch, rescaling the rest."""
    keep = 1.0 - drop_prob
    mask = torch.empty(x.shape[0], 1, 1, 1, device=x.device, dtype=x.dtype).bernoulli_(keep)
    return x * mask / keep


class CellBase(nn.Module, abc.ABC):
    """The wiring: preprocessing, node loop, concat. Subclasses implement `node`."""

    def __init__(
        self,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        steps: int,
        concat: Sequence[int],
        affine: bool,
    ) -> None:
        super().__init__()
        self.reduction = reduction
        self.steps = steps
        self.concat = tuple(concat)
        self.out_channels = len(self.concat) * C
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(C_prev_prev, C, affine=affine)
        else:
            self.preprocess0 = ReLUConvBN(C_prev_prev, C, affine=affine)
        self.preprocess1 = ReLUConvBN(C_prev, C, affine=affine)

    def edge_stride(self, input_index: int) -> int:
        return 2 if self.reduction and input_index < 2 else 1

    @abc.abstractmethod
    def node(self, index: int, states: list[torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
        """Node `index` from the states computed so far (inputs first, then earlier nodes)."""

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for i in range(self.steps):
            states.append(self.node(i, states, *args))
        return torch.cat([states[i] for i in self.concat], dim=1)


class SearchCell(CellBase):
    """Every earlier state feeds every node through a `MixedOp` (14 edges for 4 nodes)."""

    def __init__(
        self,
        steps: int,
        multiplier: int,
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
        primitives: Sequence[str],
    ) -> None:
        concat = range(2 + steps - multiplier, 2 + steps)
        super().__init__(C_prev_prev, C_prev, C, reduction, reduction_prev, steps, concat, False)
        self.edges = edge_list(steps)
        self.ops = nn.ModuleList(MixedOp(C, self.edge_stride(j), primitives) for _, j in self.edges)
        self._first_edge = [sum(2 + t for t in range(i)) for i in range(steps)]

    def node(self, index: int, states: list[torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
        (weights,) = args  # softmax(α) of this cell type, one row per edge
        start = self._first_edge[index]
        out = self.ops[start](states[0], weights[start])
        for j in range(1, 2 + index):
            out = out + self.ops[start + j](states[j], weights[start + j])
        return out


class StaticCell(CellBase):
    """Two edges per node, ops and inputs from a genotype; affine BN; optional drop-path."""

    def __init__(
        self,
        pairs: Sequence[tuple[str, int]],
        concat: Sequence[int],
        C_prev_prev: int,
        C_prev: int,
        C: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        steps = len(pairs) // 2
        super().__init__(C_prev_prev, C_prev, C, reduction, reduction_prev, steps, concat, True)
        self.inputs = tuple(j for _, j in pairs)
        self.ops = nn.ModuleList(build_op(op, C, self.edge_stride(j), True) for op, j in pairs)
        # Drop-path never removes an identity edge: it would only add noise to a free path.
        self.droppable = tuple(not (op == SKIP and self.edge_stride(j) == 1) for op, j in pairs)
        self.drop_path_prob = 0.0

    def _edge(self, k: int, states: list[torch.Tensor]) -> torch.Tensor:
        out = self.ops[k](states[self.inputs[k]])
        if self.training and self.drop_path_prob > 0.0 and self.droppable[k]:
            out = drop_path(out, self.drop_path_prob)
        return out

    def node(self, index: int, states: list[torch.Tensor], *args: torch.Tensor) -> torch.Tensor:
        return self._edge(2 * index, states) + self._edge(2 * index + 1, states)
