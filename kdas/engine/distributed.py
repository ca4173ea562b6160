"""DDP through torchrun: NCCL on GPU, gloo on CPU. Only rank 0 writes; metrics are gathered."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from kdas.engine.precision import resolve_device


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def env_rank() -> int:
    """This process's rank as torchrun sets it (0 outside torchrun)."""
    return int(os.environ.get("RANK", "0"))


def setup_distributed(device_name: str = "auto") -> DistContext:
    """Join the process group torchrun describes in the environment (or run single-process)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = env_rank()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name)
    if device.type == "cuda" and world_size > 1:
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        # one group per process, kept across stages (an ablation runs several in one torchrun);
        # torch warns and may leak NCCL resources if it is not destroyed before exit
        atexit.register(cleanup_distributed)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def all_reduce_mean(ctx: DistContext, values: dict[str, float]) -> dict[str, float]:
    """Average logged scalars over ranks so rank 0 logs the whole job's numbers."""
    if not ctx.distributed or not values:
        return values
    keys = sorted(values)
    tensor = torch.tensor([values[k] for k in keys], dtype=torch.float64)
    if ctx.device.type == "cuda":
        tensor = tensor.to(ctx.device)
    dist.all_reduce(tensor)
    tensor /= ctx.world_size
    return dict(zip(keys, tensor.cpu().tolist(), strict=True))


def gather_objects(ctx: DistContext, obj: Any) -> list[Any] | None:
    """Every rank's object on rank 0 in rank order (None elsewhere): sharded features, the
    per-rank RNG states a checkpoint must hold. Every rank must call it."""
    if not ctx.distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size if ctx.is_main else []
    dist.gather_object(obj, gathered if ctx.is_main else None, dst=0)
    return gathered if ctx.is_main else None


def gather_arrays(ctx: DistContext, array: np.ndarray) -> list[np.ndarray] | None:
    return gather_objects(ctx, array)


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model
