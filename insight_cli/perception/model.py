"""The perception CNN: a stack of 4 grayscale frames -> for each of K object slots, whether it
exists in each frame, its centre in each frame, and its current height and width."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from insight_cli.envs.preprocessing import FRAME_SIZE, STACK

MAX_OBJECTS = 256


@dataclass
class PerceptionConfig:
    n_objects: int  # K object slots, one per dataset track
    hidden: int = 2048  # width of the encoder vector and of the coordinate head's hidden layer
    threshold: float = 0.5  # existence probability above which an object counts as present


class PerceptionOutput(NamedTuple):
    features: torch.Tensor  # (B, hidden) encoder vector, shared with the actor and critic heads
    existence_logits: torch.Tensor  # (B, K, 4)
    coordinates: torch.Tensor  # (B, K, 4, 2) centre x, y in [0, 1] (unclamped while training)
    shape: torch.Tensor  # (B, K, 2) height, width in [0, 1] of the newest frame


class Encoder(nn.Module):
    """(B, 4, 84, 84) uint8 or float in [0, 1] -> (B, hidden)."""

    def __init__(self, hidden: int = 2048):
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(STACK, 32, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(32, 64, kernel_size=5, stride=2, padding=2),
            nn.ReLU(),
            nn.Conv2d(64, 64, kernel_size=5, stride=1, padding=2),
            nn.ReLU(),
            nn.Flatten(),
        )
        side = FRAME_SIZE // 4  # two stride-2 convolutions
        self.project = nn.Sequential(nn.Linear(64 * side * side, hidden), nn.ReLU(), nn.LayerNorm(hidden))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dtype == torch.uint8:
            frames = frames.float() / 255.0  # observations stay uint8 until here
        return self.project(self.convs(frames))


class PerceptionNet(nn.Module):
    def __init__(self, config: PerceptionConfig):
        super().__init__()
        self.config = config
        slots, hidden = config.n_objects, config.hidden
        self.encoder = Encoder(hidden)
        self.existence_head = nn.Linear(hidden, slots * STACK)
        self.coordinate_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, slots * STACK * 2))
        self.shape_head = nn.Linear(hidden, slots * 2)

    def heads(self, features: torch.Tensor) -> PerceptionOutput:
        batch, slots = features.shape[0], self.config.n_objects
        return PerceptionOutput(
            features,
            self.existence_head(features).view(batch, slots, STACK),
            self.coordinate_head(features).view(batch, slots, STACK, 2),
            self.shape_head(features).view(batch, slots, 2),
        )

    def forward(self, frames: torch.Tensor) -> PerceptionOutput:
        return self.heads(self.encoder(frames))

    def object_coordinates(self, output: PerceptionOutput) -> torch.Tensor:
        """(B, K, 4, 2) coordinates clamped to [0, 1], zero where the object is absent."""
        present = torch.sigmoid(output.existence_logits) > self.config.threshold
        return output.coordinates.clamp(0.0, 1.0) * present.unsqueeze(-1)
