"""What every segmentation backend returns for one frame: boxes, areas and colours."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Detections(NamedTuple):
    """M objects found on one (H, W, 3) frame, in pixels of that frame."""

    boxes: np.ndarray  # (M, 4) int32: x0, y0, x1, y1 with x1, y1 exclusive
    areas: np.ndarray  # (M,) int32: pixels in the object's mask
    colors: np.ndarray  # (M, 3) uint8: mean RGB over the mask

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.int32), np.zeros(0, np.int32), np.zeros((0, 3), np.uint8))

    def __len__(self) -> int:
        return len(self.areas)

    @property
    def centers(self) -> np.ndarray:
        """(M, 2) float: box centres x, y in pixels."""
        return (self.boxes[:, :2] + self.boxes[:, 2:]) / 2.0


def detections_from_masks(rgb: np.ndarray, masks: np.ndarray, max_area_fraction: float = 0.25) -> Detections:
    """Boolean masks (M, H, W) on `rgb` (H, W, 3) -> tight boxes, areas and mean colours.

    Empty masks and masks covering more than `max_area_fraction` of the frame (background,
    playfield) are dropped.
    """
    if len(masks) == 0:
        return Detections.empty()
    height, width = rgb.shape[:2]
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    keep = (areas > 0) & (areas <= max_area_fraction * height * width)
    masks, areas = masks[keep], areas[keep]
    if len(masks) == 0:
        return Detections.empty()
    rows, cols = masks.any(axis=2), masks.any(axis=1)  # (M, H), (M, W)
    y0, y1 = rows.argmax(axis=1), height - rows[:, ::-1].argmax(axis=1)
    x0, x1 = cols.argmax(axis=1), width - cols[:, ::-1].argmax(axis=1)
    colors = (masks[..., None] * rgb[None]).reshape(len(masks), -1, 3).sum(axis=1) / areas[:, None]
    return Detections(
        np.stack([x0, y0, x1, y1], axis=1).astype(np.int32),
        areas.astype(np.int32),
        np.round(colors).astype(np.uint8),
    )
