"""The equation learner (EQL): a network whose units are named primitives, so a trained,
sparse actor reads as a short equation over object coordinates (docs/design.md §9).

A symbolic layer maps its inputs linearly onto the arguments of a bank of primitives:
    unary  square(u) = u^2, cube(u) = u^3, constant(u) = 1, identity(u) = u
    binary product(u, v) = u * v, add(u, v) = u + v
each repeated `2 * n_funcs` times. The actor is `n_layers` symbolic layers and a linear layer
to the action logits, multiplied by an inverse temperature.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

UNARY = ("square", "cube", "constant", "identity")
BINARY = ("product", "add")
INVERSE_TEMPERATURE = 10.0
SMOOTHING = 0.05  # `a` of the smoothed L1/2 penalty


def apply_unary(name: str, u: torch.Tensor) -> torch.Tensor:
    if name == "square":
        return u * u
    if name == "cube":
        return u * u * u
    if name == "constant":
        return torch.ones_like(u)
    if name == "identity":
        return u
    raise ValueError(f"unknown unary primitive {name!r}")


def apply_binary(name: str, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    if name == "product":
        return u * v
    if name == "add":
        return u + v
    raise ValueError(f"unknown binary primitive {name!r}")


@dataclass(frozen=True)
class EqlConfig:
    n_inputs: int  # K * 4 * 2 masked object coordinates
    n_actions: int
    n_layers: int = 1
    n_funcs: int = 4
    inverse_temperature: float = INVERSE_TEMPERATURE

    @property
    def repeats(self) -> int:
        return 2 * self.n_funcs

    @property
    def units(self) -> list[str]:
        """Primitive of each output unit of a symbolic layer, in order."""
        return [name for name in (*UNARY, *BINARY) for _ in range(self.repeats)]


class SymbolicLayer(nn.Module):
    """(B, n_in) -> (B, n_units): a linear map to the primitives' arguments, then the primitives."""

    def __init__(self, n_in: int, config: EqlConfig):
        super().__init__()
        self.repeats = config.repeats
        n_unary, n_binary = len(UNARY) * self.repeats, len(BINARY) * self.repeats
        self.linear = nn.Linear(n_in, n_unary + 2 * n_binary)  # unary arguments, then (u, v) pairs
        self.n_unary = n_unary
        self.n_out = n_unary + n_binary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)
        unary = z[:, : self.n_unary].view(-1, len(UNARY), self.repeats)
        pairs = z[:, self.n_unary :].view(-1, len(BINARY), self.repeats, 2)
        outputs = [apply_unary(name, unary[:, index]) for index, name in enumerate(UNARY)]
        outputs += [
            apply_binary(name, pairs[:, index, :, 0], pairs[:, index, :, 1]) for index, name in enumerate(BINARY)
        ]
        return torch.cat(outputs, dim=1)


class EqlActor(nn.Module):
    """(B, K, 4, 2) masked object coordinates -> (B, A) action logits."""

    def __init__(self, config: EqlConfig):
        super().__init__()
        self.config = config
        layers, width = [], config.n_inputs
        for _ in range(config.n_layers):
            layers.append(SymbolicLayer(width, config))
            width = layers[-1].n_out
        self.layers = nn.ModuleList(layers)
        self.output = nn.Linear(width, config.n_actions)

    def forward(self, coordinates: torch.Tensor) -> torch.Tensor:
        x = coordinates.flatten(1)  # (B, K*4*2), slot-major: x_obj_f, y_obj_f for f = 1..4
        for layer in self.layers:
            x = layer(x)
        return self.output(x) * self.config.inverse_temperature


def smoothed_l_half(weights: torch.Tensor, a: float = SMOOTHING) -> torch.Tensor:
    """Smoothed L1/2 penalty, summed: |w|^1/2 where |w| >= a, and below it the polynomial
    (-w^4 / (8 a^3) + 3 w^2 / (4 a) + 3 a / 8)^1/2, which meets it smoothly and has a finite
    gradient at 0."""
    magnitude = weights.abs()
    small = weights.clamp(-a, a)  # each branch sees only inputs it is defined on, so no NaN gradient leaks
    inner = -(small**4) / (8 * a**3) + 3 * small**2 / (4 * a) + 3 * a / 8
    return torch.where(magnitude >= a, magnitude.clamp_min(a).sqrt(), inner.sqrt()).sum()


def eql_penalty(actor: EqlActor, a: float = SMOOTHING) -> torch.Tensor:
    """The sparsity penalty over all EQL weights and biases."""
    return sum(smoothed_l_half(parameter, a) for parameter in actor.parameters())
