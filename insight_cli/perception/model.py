"""The perception CNN: a stack of 4 grayscale frames -> for each of K object slots, whether it
exists in each frame, its centre in each frame, and its current height and width."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import NamedTuple

import torch
from torch import nn

from insight_cli.envs.preprocessing import FRAME_SIZE, STACK

# Weights smaller than this change no output in float32 (the activations they multiply are of
# order 1e-3 to 1e3, the sums they join far larger than their products), so they are set to 0.
# Why: weight decay shrinks the weights of units that never fire geometrically, into the
# denormal range, where every multiply takes a slow microcode path. Measured on a cpu-preset
# Pong perception after 40 epochs: 58% of its weights below 1e-10, many denormal, and a forward
# pass of 8 stacks 24.8 ms instead of 1.2 ms with those weights zeroed (the same coordinates to
# the last bit); training ran at 300 instead of 1,000 env steps/s. Flushing denormals in the FPU
# would do only for the calling thread, not torch's worker threads.
NEGLIGIBLE_WEIGHT = 1e-20


@torch.no_grad()
def zero_negligible_weights(module: nn.Module) -> None:
    """Set every weight of `module` below NEGLIGIBLE_WEIGHT in size to exactly 0."""
    for parameter in module.parameters():
        parameter.masked_fill_(parameter.abs() < NEGLIGIBLE_WEIGHT, 0.0)


@dataclass
class PerceptionConfig:
    n_objects: int  # K object slots, one per dataset track
    hidden: int = 2048  # width of the encoder vector and of the coordinate head's hidden layer
    threshold: float = 0.5  # existence probability above which an object counts as present
    encoder: str = "insight"  # convolution stack: one of ENCODERS

    @classmethod
    def from_dict(cls, values: dict) -> PerceptionConfig:
        """The config a checkpoint saved among other settings (defaults for what older ones lack)."""
        return cls(**{field.name: values[field.name] for field in fields(cls) if field.name in values})


class PerceptionOutput(NamedTuple):
    features: torch.Tensor  # (B, hidden) encoder vector, shared with the actor and critic heads
    existence_logits: torch.Tensor  # (B, K, 4)
    coordinates: torch.Tensor  # (B, K, 4, 2) centre x, y in [0, 1] (unclamped while training)
    shape: torch.Tensor  # (B, K, 2) height, width in [0, 1] of the newest frame


def _convolutions(encoder: str) -> tuple[nn.Sequential, int]:
    """The convolution stack of an encoder and the size of its flattened output."""
    if encoder == "insight":  # the paper's: 5x5 kernels, 21x21 maps at the end
        layers, side = [(STACK, 32, 5, 2, 2), (32, 64, 5, 2, 2), (64, 64, 5, 1, 2)], FRAME_SIZE // 4
    elif encoder == "nature":  # the DQN/CleanRL Atari CNN: 15x fewer multiply-adds (measured 10x faster on a CPU)
        layers, side = [(STACK, 32, 8, 4, 0), (32, 64, 4, 2, 0), (64, 64, 3, 1, 0)], 7
    else:
        raise ValueError(f"unknown encoder {encoder!r}")
    modules: list[nn.Module] = []
    for channels_in, channels_out, kernel, stride, padding in layers:
        modules += [nn.Conv2d(channels_in, channels_out, kernel, stride, padding), nn.ReLU()]
    return nn.Sequential(*modules, nn.Flatten()), 64 * side * side


class Encoder(nn.Module):
    """(B, 4, 84, 84) uint8 or float in [0, 1] -> (B, hidden)."""

    def __init__(self, hidden: int = 2048, encoder: str = "insight"):
        super().__init__()
        self.convs, flat = _convolutions(encoder)
        self.project = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(), nn.LayerNorm(hidden))
        # The game's static picture (median frame of the dataset, in [0, 1]), taken off every
        # frame: on Pong the objects are a few pixels on a uniform field, and with the field
        # removed the coordinate heads stop predicting the mean position 2-3x sooner (measured:
        # ball error 8.7 vs 26.4 x100 after 1,200 steps). Zero (no subtraction) until set.
        self.register_buffer("background", torch.zeros(FRAME_SIZE, FRAME_SIZE))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        if frames.dtype == torch.uint8:
            frames = frames.float() / 255.0  # observations stay uint8 until here
        return self.project(self.convs(frames - self.background))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Checkpoints written before the background existed subtracted nothing: load them so.
        state_dict.setdefault(prefix + "background", torch.zeros_like(self.background))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @torch.no_grad()
    def set_background(self, frames: torch.Tensor) -> None:
        """(N, 84, 84) uint8 frames -> their per-pixel median becomes the background."""
        self.background.copy_(frames.flatten(1).median(dim=0).values.view(FRAME_SIZE, FRAME_SIZE).float() / 255.0)


class PerceptionNet(nn.Module):
    def __init__(self, config: PerceptionConfig):
        super().__init__()
        self.config = config
        slots, hidden = config.n_objects, config.hidden
        self.encoder = Encoder(hidden, config.encoder)
        self.existence_head = nn.Linear(hidden, slots * STACK)
        self.coordinate_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, slots * STACK * 2))
        self.shape_head = nn.Linear(hidden, slots * 2)
        # checkpoints written before the weights were kept clear of the denormal range load fast too
        self.register_load_state_dict_post_hook(lambda module, _: zero_negligible_weights(module))

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
