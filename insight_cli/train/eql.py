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
from typing import Callable, Sequence

import torch
from torch import nn

INVERSE_TEMPERATURE = 10.0
SMOOTHING = 0.05  # `a` of the smoothed L1/2 penalty


@dataclass(frozen=True)
class Primitive:
    """One kind of EQL unit. `apply` is written with + and * alone (the constant as u * 0 + 1),
    so the same function runs on tensors in the network and on the polynomials, term bounds and
    coefficient forms of extraction. `gains(lu, lv)`: for each argument, the most an expanded
    coefficient of the unit moves per unit change of one of that argument's coefficients, when
    the arguments' largest coefficients are lu and lv (what pruning may safely remove)."""

    name: str
    arity: int  # how many rows of the layer's linear map feed one unit: 1 (u) or 2 (u, v)
    apply: Callable
    gains: Callable[[float, float], tuple[float, ...]]


PRIMITIVES = (
    Primitive("square", 1, lambda u: u * u, lambda lu, lv: (2 * lu,)),
    Primitive("cube", 1, lambda u: u * u * u, lambda lu, lv: (6 * lu**2,)),
    Primitive("constant", 1, lambda u: u * 0 + 1, lambda lu, lv: (0.0,)),  # its argument moves nothing
    Primitive("identity", 1, lambda u: u, lambda lu, lv: (1.0,)),
    Primitive("product", 2, lambda u, v: u * v, lambda lu, lv: (lv, lu)),
    Primitive("add", 2, lambda u, v: u + v, lambda lu, lv: (1.0, 1.0)),
)
BY_NAME = {primitive.name: primitive for primitive in PRIMITIVES}
UNARY = tuple(primitive for primitive in PRIMITIVES if primitive.arity == 1)
BINARY = tuple(primitive for primitive in PRIMITIVES if primitive.arity == 2)


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
    def units(self) -> list[Primitive]:
        """The primitive of each output unit of a symbolic layer, in order: each unary one
        `repeats` times, then each binary one."""
        return [primitive for primitive in (*UNARY, *BINARY) for _ in range(self.repeats)]


class SymbolicLayer(nn.Module):
    """(B, n_in) -> (B, n_units): a linear map to the primitives' arguments, then the primitives.
    The map's rows are the unary units' arguments, one per unit, then the binary units' (u, v)
    pairs, two adjacent rows per unit (`argument_rows`)."""

    def __init__(self, n_in: int, config: EqlConfig):
        super().__init__()
        self.repeats = config.repeats
        self.units = config.units
        self.n_unary = len(UNARY) * self.repeats
        self.n_out = len(self.units)
        self.linear = nn.Linear(n_in, self.n_unary + 2 * (self.n_out - self.n_unary))

    def argument_rows(self, unit: int) -> tuple[int, ...]:
        """The rows of the linear map that feed output `unit`: (u,) or (u, v)."""
        if unit < self.n_unary:
            return (unit,)
        u = self.n_unary + 2 * (unit - self.n_unary)
        return u, u + 1

    def combine(self, arguments: Sequence) -> list:
        """The outputs, unit by unit, from the values of the linear map's rows: for anything
        with + and * (extraction passes polynomials and bounds)."""
        return [
            primitive.apply(*(arguments[row] for row in self.argument_rows(unit)))
            for unit, primitive in enumerate(self.units)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.linear(x)  # the same layout as argument_rows, a block of `repeats` units per primitive
        unary = z[:, : self.n_unary].view(-1, len(UNARY), self.repeats)
        pairs = z[:, self.n_unary :].view(-1, len(BINARY), self.repeats, 2)
        outputs = [primitive.apply(unary[:, index]) for index, primitive in enumerate(UNARY)]
        outputs += [
            primitive.apply(pairs[:, index, :, 0], pairs[:, index, :, 1]) for index, primitive in enumerate(BINARY)
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
