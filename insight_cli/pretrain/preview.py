"""A picture of what the perception network sees: labelled vs predicted object centres."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch

from insight_cli.files import atomic_path
from insight_cli.perception.data import PerceptionData
from insight_cli.pictures import mark_points, upscale, write_contact_sheet

LABEL_COLOR, PREDICTED_COLOR = (60, 220, 60), (240, 60, 60)


@torch.no_grad()
def write_preview(path: Path, model, data: PerceptionData, dataset, objects: list[dict], count: int = 8) -> None:
    """Test frames with labelled centres (green circles) and predicted ones (red crosses)."""
    model.eval()
    rows = data.test_rows[torch.linspace(0, len(data.test_rows) - 1, count).long()]
    stacks, targets = data.batch(rows)
    output = model(stacks)
    predicted = model.object_coordinates(output)[:, :, -1].cpu().numpy()  # (B, K, 2) newest frame
    present = (torch.sigmoid(output.existence_logits[:, :, -1]) > model.config.threshold).cpu().numpy()
    labelled, exists = targets.coordinates[:, :, -1].cpu().numpy(), targets.exists[:, :, -1].cpu().numpy()
    frames = []
    for index, row in enumerate(rows.tolist()):
        rgb = dataset.rgb(row)
        canvas = upscale(rgb)
        size = np.array([canvas.shape[1], canvas.shape[0]])
        for slot in range(len(objects)):
            if exists[index, slot]:
                cv2.circle(canvas, tuple(int(v) for v in labelled[index, slot] * size), 6, LABEL_COLOR, 1)
            if present[index, slot]:
                mark_points(canvas, predicted[index, slot][None], [objects[slot]["name"]], PREDICTED_COLOR)
        frames.append(canvas)
    with atomic_path(path) as temporary:
        write_contact_sheet(temporary, frames)
