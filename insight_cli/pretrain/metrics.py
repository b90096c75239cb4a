"""Perception quality on the test split: losses, coordinate error and existence detection."""

from __future__ import annotations

import numpy as np
import torch

from insight_cli.perception.data import PerceptionData
from insight_cli.perception.losses import PerceptionLosses, perception_loss


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the precision-recall curve, as the mean precision at each true positive."""
    positives = labels.sum()
    if positives == 0:
        return float("nan")
    order = np.argsort(-scores, kind="stable")
    hits = labels[order].astype(np.float64)
    precision_at_hit = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float((precision_at_hit * hits).sum() / positives)


def f1_score(predicted: np.ndarray, labels: np.ndarray) -> float:
    true_positive = (predicted & labels).sum()
    denominator = predicted.sum() + labels.sum()
    return float(2 * true_positive / denominator) if denominator else 1.0


@torch.no_grad()
def evaluate(model, data: PerceptionData, weights: torch.Tensor, batch_size: int, amp: bool, frame_shape) -> dict:
    """Test-split losses, coordinate MAE (x100 of the frame, and in frame pixels) where objects
    exist, and existence average precision and F1 at the model's threshold."""
    model.eval()
    totals = {name: 0.0 for name in PerceptionLosses._fields}
    errors, scores, labels = [], [], []
    batches = 0
    for start in range(0, len(data.test_rows), batch_size * 4):
        rows = data.test_rows[start : start + batch_size * 4]
        stacks, targets = data.batch(rows)
        with torch.autocast(device_type="cuda", dtype=torch.bfloat16, enabled=amp):
            output = model(stacks)
        output = type(output)(*(tensor.float() for tensor in output))
        losses = perception_loss(output, targets, weights)
        for name, value in zip(PerceptionLosses._fields, losses):
            totals[name] += float(value)
        batches += 1
        errors.append((output.coordinates.clamp(0, 1) - targets.coordinates)[targets.exists].abs().cpu())
        scores.append(torch.sigmoid(output.existence_logits).flatten().cpu())
        labels.append(targets.exists.flatten().cpu())
    error = torch.cat(errors).numpy()  # (M, 2) x, y
    score, label = torch.cat(scores).numpy(), torch.cat(labels).numpy()
    height, width = (frame_shape or (1, 1))[:2]
    return {
        "test_loss": totals["total"] / batches,
        **{f"test_{name}": totals[name] / batches for name in PerceptionLosses._fields if name != "total"},
        "mae_x100": float(error.mean() * 100) if len(error) else float("nan"),
        "mae_pixels": float((error * np.array([width, height])).mean()) if len(error) else float("nan"),
        "existence_ap": average_precision(score, label),
        "existence_f1": f1_score(score > model.config.threshold, label),
    }
