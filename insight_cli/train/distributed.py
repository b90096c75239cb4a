"""Data-parallel training under torchrun: one process per device, each with its own envs;
gradients averaged with all-reduce; rank 0 logs and saves."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class Ranks:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def init_ranks(device_type: str) -> Ranks:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA); a plain run is rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Ranks()
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    return Ranks(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def broadcast_parameters(module: nn.Module, ranks: Ranks) -> None:
    """Start every rank from rank 0's weights."""
    if ranks.distributed:
        for tensor in module.state_dict().values():
            dist.broadcast(tensor, src=0)


def average_gradients(module: nn.Module, ranks: Ranks) -> None:
    """All-reduce the gradients as one flat buffer and divide by the number of ranks."""
    if not ranks.distributed:
        return
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    flat = torch.cat([g.flatten() for g in grads])
    dist.all_reduce(flat)
    flat /= ranks.world_size
    offset = 0
    for grad in grads:
        grad.copy_(flat[offset : offset + grad.numel()].view_as(grad))
        offset += grad.numel()


def parameters_in_sync(module: nn.Module, ranks: Ranks) -> bool:
    """Whether every rank holds exactly rank 0's parameters (a checksum per rank, compared)."""
    if not ranks.distributed:
        return True
    checksum = torch.stack([p.detach().double().sum() for p in module.parameters()]).cpu()
    gathered = [torch.zeros_like(checksum) for _ in range(ranks.world_size)]
    dist.all_gather(gathered, checksum)
    return all(torch.equal(gathered[0], other) for other in gathered[1:])


def shutdown(ranks: Ranks) -> None:
    if ranks.distributed and dist.is_initialized():
        dist.destroy_process_group()
