"""The part-aware op (Auto-ReID): attention across horizontal body stripes.

A person image keeps its vertical structure through the network (head at the top, feet at the
bottom), so the op pools P horizontal stripes into part vectors, lets the parts attend to each
other, and paints each attended part vector back over its stripe next to the input.

Stripe i holds rows [floor(i*H/P), floor((i+1)*H/P)); with H >= P every stripe is non-empty and
every row is in exactly one. Pooling and painting are matrix products with a fixed row-to-stripe
matrix built from the (static) input height, and the P per-stripe 1x1 convs are one grouped conv,
so the forward has no Python loop over data and exports to ONNX with a dynamic batch axis.

Written so that the INT8 (QDQ) export runs the whole op on integers in ONNX Runtime: every
product, the attention ones included, reads dequantized inputs (QLinearMatMul), the softmax
becomes QLinearSoftmax, the width mean is an average pool (ReduceMean has no integer kernel) and
the ReLU follows the stripe product directly (behind the reshapes it folded into the reshaped
tensor's range, which then differed from its input's, leaving a float DQ -> Unsqueeze -> Q).
"""

from __future__ import annotations

import math
import warnings

import torch
import torch.nn.functional as F
from torch import nn

from kdas.errors import KdasError
from kdas.models.blocks import FactorizedReduce

DEFAULT_PARTS = 4


def stripe_of_rows(height: int, parts: int = DEFAULT_PARTS) -> torch.Tensor:
    """Stripe index of each row (int64, length `height`).

    Row r is in the last stripe i with floor(i*H/P) <= r, i.e. i = ceil((r+1)*P/H) - 1.
    """
    if height < parts:
        raise KdasError(
            f"part_aware needs a feature map at least {parts} rows high (one row per part), got "
            f"{height}; use a taller input image or fewer reduction cells"
        )
    rows = torch.arange(height)
    return ((rows + 1) * parts - 1) // height


def stripe_matrices(
    height: int, parts: int, device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """(assign, average): assign[r, i] = 1 if row r is in stripe i; average = assign / rows in i.

    `rows_mean @ average` gives the per-stripe mean, `parts @ assign.T` paints parts onto rows.
    """
    stripe = stripe_of_rows(height, parts)
    assign = (stripe[:, None] == torch.arange(parts)[None, :]).to(dtype)
    average = assign / assign.sum(dim=0, keepdim=True)
    return assign.to(device), average.to(device)


def _static_size(x: torch.Tensor, dim: int) -> int:
    """`x.shape[dim]` as a Python int. The stripe layout is fixed by the input size, so an
    exported graph bakes it in as constants; the tracer's warning about exactly that is silenced."""
    if not torch.jit.is_tracing():
        return int(x.shape[dim])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return int(x.shape[dim])


class PartAware(nn.Module):
    """x (B, C_in, H, W) -> (B, C_out, ceil(H/s), ceil(W/s)); see the module docstring."""

    def __init__(
        self,
        C_in: int,
        C_out: int,
        stride: int = 1,
        affine: bool = True,
        parts: int = DEFAULT_PARTS,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise KdasError(f"part_aware: stride must be 1 or 2, got {stride}")
        self.parts = parts
        self.part_dim = max(1, C_in // 3)
        h = self.part_dim
        self.relu = nn.ReLU(inplace=False)
        # One grouped conv = P independent 1x1 convs C_in -> h (own weights per stripe).
        self.stripe_conv = nn.Conv1d(parts * C_in, parts * h, 1, groups=parts, bias=False)
        self.stripe_bn = nn.BatchNorm1d(parts * h, affine=affine)
        self.key = nn.Linear(h, h)
        self.query = nn.Linear(h, h)
        self.scale = 1.0 / math.sqrt(h)
        if stride == 1:
            self.out = nn.Sequential(
                nn.Conv2d(C_in + h, C_out, 1, bias=False), nn.BatchNorm2d(C_out, affine=affine)
            )
        else:
            self.out = FactorizedReduce(C_in + h, C_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = _static_size(x, 2), _static_size(x, 3)
        assign, average = stripe_matrices(height, self.parts, x.device, x.dtype)
        # The width mean as a 1 x W average pool, not x.mean(3): ONNX Runtime runs AveragePool
        # on INT8 data, a ReduceMean stays float32 between a dequantize and a quantize.
        row_means = F.avg_pool2d(x, (1, width)).squeeze(3)  # (B, C, H)
        pooled = self.relu(torch.matmul(row_means, average))  # (B, C, P): per-stripe average
        pooled = pooled.transpose(1, 2).flatten(1).unsqueeze(-1)  # (B, P*C, 1)
        part_vectors = self.stripe_bn(self.stripe_conv(pooled))  # (B, P*h, 1)
        part_vectors = part_vectors.reshape(-1, self.parts, self.part_dim)  # (B, P, h)
        keys, queries = self.key(part_vectors), self.query(part_vectors)
        attention = torch.softmax(torch.matmul(keys, queries.transpose(1, 2)) * self.scale, dim=-1)
        attended = torch.matmul(attention, part_vectors)  # (B, P, h)
        rows = torch.matmul(attended.transpose(1, 2), assign.t())  # (B, h, H)
        painted = rows.unsqueeze(-1).expand(-1, -1, -1, width)
        return self.out(torch.cat([x, painted], dim=1))
