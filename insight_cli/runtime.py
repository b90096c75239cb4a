"""Run-time choices every verb shares: which device, which seed."""

from __future__ import annotations

import os
import random
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from insight_cli.errors import InsightError

if TYPE_CHECKING:
    import torch


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def resolve_device(device: Device | str) -> "torch.device":
    """'auto' -> CUDA when available, else CPU; 'cuda' without a GPU is an error."""
    import torch

    device = Device(device)
    if device is Device.cuda and not torch.cuda.is_available():
        raise InsightError("--device cuda was asked for but no CUDA GPU is visible", hint="use --device cpu or auto")
    if device is Device.auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device.value)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def current_umask() -> int:
    """The process's file-creation mask (reading it means setting it, so it is set back)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask
