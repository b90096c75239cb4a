"""Make `import torchvision` work when its compiled ops cannot load.

A torchvision wheel built for CUDA next to a CPU-only torch (or any version mismatch) cannot load its `_C`
extension. torchvision then still registers fake kernels for `torchvision::nms` and `torchvision::qnms` at import,
so the import dies with "operator torchvision::nms does not exist". The foundation segmenters need only one compiled
op: nms (ultralytics calls `torchvision.ops.nms`, segment-anything calls `batched_nms`, which calls nms).
`roi_align` (only SAM 3 in ultralytics uses it) has its own pure-torch path when the ops are missing, and the other
compiled ops (deform_conv2d, ps_roi_*, roi_pool, box_iou_rotated) are used by neither package.
"""

from __future__ import annotations

import functools
import logging
import sys
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

log = logging.getLogger(__name__)

# Rows of the IoU matrix computed at once: bounds memory at ROWS x N floats (N can reach ultralytics' 30000).
_IOU_ROWS_PER_BLOCK = 256


@functools.cache
def ensure_torchvision() -> ModuleType:
    """Import torchvision, backing its missing compiled nms with a pure-torch one (warns once) if needed."""
    try:
        import torchvision
    except RuntimeError as error:
        if "torchvision::" not in str(error):
            raise
        # The failed import left half-initialised torchvision modules behind; start the retry from scratch.
        for name in [name for name in sys.modules if name == "torchvision" or name.startswith("torchvision.")]:
            del sys.modules[name]
        _define_fallback_ops()
        import torchvision

    if not torchvision.extension._has_ops():
        _define_fallback_ops()
        # nms refuses to run while the extension is missing; lift that check for box ops only, so other ops keep
        # either their pure-torch paths (roi_align) or their clear "Couldn't load custom C++ ops" error.
        torchvision.ops.boxes._assert_has_ops = lambda: None
        log.warning(
            "torchvision's compiled ops could not be loaded (torch/torchvision build mismatch?); "
            "using a pure-torch nms instead"
        )
    return torchvision


def nms_fallback(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
    """Greedy non-maximum suppression with the same result as `torchvision::nms`.

    boxes (N, 4) x0, y0, x1, y1; scores (N,). Returns int64 (K,) indices of the kept boxes by decreasing score: a box
    is dropped when its IoU with a higher-scoring kept box exceeds `iou_threshold`.
    """
    order = torch.sort(scores, descending=True, stable=True).indices
    sorted_boxes = boxes[order]
    suppressed = np.zeros(len(order), dtype=bool)
    for start in range(0, len(order), _IOU_ROWS_PER_BLOCK):
        # Only boxes still alive can suppress, and only boxes after them in score order.
        rows = start + np.flatnonzero(~suppressed[start : start + _IOU_ROWS_PER_BLOCK])
        row_indices = torch.from_numpy(rows).to(order.device)
        overlaps = (_pairwise_iou(sorted_boxes[row_indices], sorted_boxes[start:]) > iou_threshold).cpu().numpy()
        for overlap, index in zip(overlaps, rows):  # overlap: (N - start,) over boxes from `start` on
            if not suppressed[index]:
                suppressed[index + 1 :] |= overlap[index + 1 - start :]
    return order[torch.from_numpy(~suppressed).to(order.device)]


def _pairwise_iou(boxes_a: Tensor, boxes_b: Tensor) -> Tensor:
    """(A, 4), (B, 4) x0, y0, x1, y1 -> (A, B) IoU; 0/0 for degenerate boxes gives NaN, which suppresses nothing."""
    area_a = (boxes_a[:, 2] - boxes_a[:, 0]) * (boxes_a[:, 3] - boxes_a[:, 1])
    area_b = (boxes_b[:, 2] - boxes_b[:, 0]) * (boxes_b[:, 3] - boxes_b[:, 1])
    top_left = torch.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = torch.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    return intersection / (area_a[:, None] + area_b[None, :] - intersection)


def _define_fallback_ops() -> None:
    """Define `torchvision::nms` and `torchvision::qnms` (CPU and CUDA) unless the real ones exist."""
    if hasattr(torch.ops.torchvision, "nms"):
        return

    @torch.library.custom_op("torchvision::nms", mutates_args=())
    def nms(dets: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        return nms_fallback(dets, scores, iou_threshold)

    # qnms gets integer representations of quantized boxes; IoU does not depend on scale or zero point.
    @torch.library.custom_op("torchvision::qnms", mutates_args=())
    def qnms(dets: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        return nms_fallback(dets.float(), scores.float(), iou_threshold)
