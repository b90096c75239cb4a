"""Perception losses (docs/design.md §8), pure functions on tensors, shared by pretrain and train.

Shapes: B samples, K object slots, 4 frames.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from insight_cli.perception.model import PerceptionOutput

FOCAL_GAMMA = 2.0
WEIGHT_ALPHA = 0.1
WEIGHT_BETA = 10.0


class PerceptionTargets(NamedTuple):
    exists: torch.Tensor  # (B, K, 4) bool
    coordinates: torch.Tensor  # (B, K, 4, 2) centre x, y in [0, 1]
    shape: torch.Tensor  # (B, K, 2) height, width of the newest frame, in [0, 1]


class PerceptionLosses(NamedTuple):
    total: torch.Tensor
    coordinates: torch.Tensor
    existence: torch.Tensor
    shape: torch.Tensor


def object_weights(frequency: torch.Tensor, alpha: float = WEIGHT_ALPHA, beta: float = WEIGHT_BETA) -> torch.Tensor:
    """(K,) fraction of frames each object is present in -> (K,) loss weights; rare objects
    weigh more: alpha + sigmoid(beta * (normalised inverse frequency - its mean))."""
    inverse = 1.0 / frequency.clamp_min(1e-4)
    normalised = inverse / inverse.max()
    return alpha + torch.sigmoid(beta * (normalised - normalised.mean()))


def masked_l1(
    prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Weighted mean absolute error over the entries where mask is set.

    prediction, target: (B, K, ..., D); mask: (B, K, ...) bool; weights: (K,).
    """
    error = (prediction - target).abs().sum(dim=-1)  # (B, K, ...)
    weight = mask * weights.view(1, -1, *([1] * (mask.dim() - 2)))
    return (error * weight).sum() / mask.sum().clamp_min(1)


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor, gamma: float = FOCAL_GAMMA
) -> torch.Tensor:
    """Binary focal loss, mean over entries: -(1 - p_t)^gamma log p_t, weighted per object.

    logits, target: (B, K, 4); weights: (K,).
    """
    target = target.float()
    log_p_t = -F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    focal = -((1 - log_p_t.exp()) ** gamma) * log_p_t
    return (focal * weights.view(1, -1, 1)).mean()


def perception_loss(output: PerceptionOutput, targets: PerceptionTargets, weights: torch.Tensor) -> PerceptionLosses:
    coordinates = masked_l1(output.coordinates, targets.coordinates, targets.exists, weights)
    existence = focal_loss(output.existence_logits, targets.exists, weights)
    shape = masked_l1(output.shape, targets.shape, targets.exists[..., -1], weights)
    return PerceptionLosses(coordinates + existence + shape, coordinates, existence, shape)
