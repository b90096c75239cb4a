"""Foundation-model segmenters: FastSAM (through ultralytics) and SAM (segment-anything), from local weights only.

Both turn one (H, W, 3) uint8 RGB frame into `Detections` via `detections_from_masks`; neither ever downloads.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from insight_cli.errors import InsightError
from insight_cli.segment.detections import Detections, detections_from_masks
from insight_cli.segment.torchvision_compat import ensure_torchvision

if TYPE_CHECKING:
    from ultralytics.engine.results import Results

FASTSAM_WEIGHTS_HINT = (
    "download FastSAM-s.pt or FastSAM-x.pt from https://github.com/ultralytics/assets/releases "
    "and pass --checkpoint PATH"
)
SAM_WEIGHTS_HINT = (
    "download sam_vit_b_01ec64.pth, or the vit_l / vit_h checkpoint, from "
    "https://github.com/facebookresearch/segment-anything#model-checkpoints and pass --checkpoint PATH"
)

# SAM's image-encoder width identifies the architecture: the patch embedding is (width, 3, 16, 16).
SAM_MODEL_TYPE_BY_WIDTH = {768: "vit_b", 1024: "vit_l", 1280: "vit_h"}


class FastSamSegmenter:
    """FastSAM (a YOLOv8-seg network trained to segment everything) on Atari frames."""

    def __init__(
        self,
        checkpoint: Path | None,
        device: torch.device,
        image_size: int = 640,
        confidence: float = 0.4,
        iou: float = 0.9,
    ):
        """checkpoint: a local FastSAM-s.pt / FastSAM-x.pt; image_size: the longer side the frame is resized to.

        confidence: the least object score kept; iou: of two candidates whose boxes overlap by more than this IoU,
        only the higher-scoring one is kept (FastSAM's own default, 0.9, keeps nested parts apart).
        """
        checkpoint = _existing_checkpoint(checkpoint, "FastSAM", FASTSAM_WEIGHTS_HINT)
        ensure_torchvision()
        _keep_ultralytics_offline()
        from ultralytics import FastSAM
        from ultralytics.nn.tasks import SegmentationModel

        try:
            self._model = FastSAM(checkpoint)
        # ultralytics reports an unusable file through several exception types (TypeError for a damaged or foreign
        # pickle, AssertionError for a wrong suffix, ...); all of them mean "this file is not FastSAM weights".
        except Exception as error:
            raise _unloadable(checkpoint, "FastSAM", FASTSAM_WEIGHTS_HINT) from error
        if not isinstance(self._model.model, SegmentationModel):  # e.g. a detector, or a non-.pt file
            raise InsightError(
                f"{checkpoint} is not a FastSAM checkpoint: it holds no ultralytics segmentation model",
                hint=FASTSAM_WEIGHTS_HINT,
            )
        # Without saved training arguments ultralytics takes the task to be "detect" and refuses to predict masks.
        self._model.task = self._model.overrides["task"] = "segment"
        self._predict_options = dict(
            imgsz=image_size,
            conf=confidence,
            iou=iou,
            device=device,
            retina_masks=True,  # masks at the frame's own H x W instead of the letterboxed network input
            verbose=False,
        )

    def __call__(self, rgb: np.ndarray) -> Detections:
        """rgb: (H, W, 3) uint8 -> the objects FastSAM finds on it."""
        return self.segment_batch(rgb[None])[0]

    def segment_batch(self, frames: np.ndarray) -> list[Detections]:
        """frames: (B, H, W, 3) uint8 RGB, run through the network as one batch -> B `Detections`."""
        # ultralytics reads numpy images as OpenCV BGR.
        bgr_frames = [np.ascontiguousarray(frame[..., ::-1]) for frame in frames]
        with _torch_threads_kept():
            results = self._model.predict(bgr_frames, **self._predict_options)
        return [
            detections_from_masks(frame, _result_masks(result, frame.shape[:2]))
            for frame, result in zip(frames, results)
        ]


class SamSegmenter:
    """Segment Anything's automatic mask generator (a grid of point prompts) on Atari frames."""

    def __init__(
        self,
        checkpoint: Path | None,
        device: torch.device,
        points_per_side: int = 32,
        predicted_iou_threshold: float = 0.88,
        stability_threshold: float = 0.95,
    ):
        """checkpoint: a local sam_vit_{b,l,h}_*.pth; its architecture is read from the weights' shapes.

        points_per_side: the prompt grid is points_per_side^2 points over the frame (SAM resizes the frame to
        1024 on its longer side itself). The thresholds drop masks whose predicted IoU or stability (IoU of the
        mask at two binarisation thresholds) is lower: SAM's defaults.
        """
        checkpoint = _existing_checkpoint(checkpoint, "SAM", SAM_WEIGHTS_HINT)
        ensure_torchvision()
        from segment_anything import SamAutomaticMaskGenerator, sam_model_registry

        try:
            state_dict = torch.load(checkpoint, map_location="cpu", weights_only=True)
        # torch.load fails in many ways on a bad file (RuntimeError for a broken zip, UnpicklingError for a foreign
        # pickle, EOFError for an empty file, ...); all of them mean "this file is not SAM weights".
        except Exception as error:
            raise _unloadable(checkpoint, "SAM", SAM_WEIGHTS_HINT) from error
        model_type = _sam_model_type(state_dict, checkpoint)
        model = sam_model_registry[model_type]()
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as error:  # missing / unexpected keys or mismatched shapes
            raise InsightError(
                f"{checkpoint} looks like SAM {model_type}, but its weights do not fit that architecture",
                hint=SAM_WEIGHTS_HINT,
            ) from error
        self.model_type = model_type
        self._generator = SamAutomaticMaskGenerator(
            model.to(device).eval(),
            points_per_side=points_per_side,
            pred_iou_thresh=predicted_iou_threshold,
            stability_score_thresh=stability_threshold,
        )

    def __call__(self, rgb: np.ndarray) -> Detections:
        """rgb: (H, W, 3) uint8 -> the objects SAM finds on it."""
        masks = [record["segmentation"] for record in self._generator.generate(rgb)]  # each (H, W) bool
        stacked = np.stack(masks) if masks else np.zeros((0, *rgb.shape[:2]), dtype=bool)
        return detections_from_masks(rgb, stacked)

    def segment_batch(self, frames: np.ndarray) -> list[Detections]:
        """frames: (B, H, W, 3) uint8 RGB -> B `Detections`; one by one, as SAM's generator takes one image."""
        return [self(frame) for frame in frames]


def _existing_checkpoint(checkpoint: Path | None, model_name: str, hint: str) -> Path:
    """The checkpoint as an absolute path, or an InsightError when it was not given or is not a file."""
    if checkpoint is None:
        raise InsightError(f"no {model_name} checkpoint given", hint=hint)
    checkpoint = Path(checkpoint).expanduser().resolve()
    if not checkpoint.is_file():
        raise InsightError(f"{model_name} weights not found at {checkpoint}", hint=hint)
    return checkpoint


def _unloadable(checkpoint: Path, model_name: str, hint: str) -> InsightError:
    """A one-line InsightError for a checkpoint file that exists but cannot be read (the cause stays chained)."""
    return InsightError(
        f"cannot load {model_name} weights from {checkpoint}: the file is damaged or not a {model_name} checkpoint",
        hint=hint,
    )


def _sam_model_type(state_dict: object, checkpoint: Path) -> str:
    """'vit_b' / 'vit_l' / 'vit_h' from the image encoder's width in a SAM state dict."""
    weight = state_dict.get("image_encoder.patch_embed.proj.weight") if isinstance(state_dict, dict) else None
    width = weight.shape[0] if isinstance(weight, torch.Tensor) and weight.ndim == 4 else None
    if width not in SAM_MODEL_TYPE_BY_WIDTH:
        raise InsightError(f"{checkpoint} is not a SAM ViT-B/L/H state dict", hint=SAM_WEIGHTS_HINT)
    return SAM_MODEL_TYPE_BY_WIDTH[width]


def _keep_ultralytics_offline() -> None:
    """Stop ultralytics from fetching weights, fonts or pip packages (it reads these when first imported)."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"


@contextlib.contextmanager
def _torch_threads_kept() -> Iterator[None]:
    """ultralytics sets torch's CPU threads to cores - 1 when it picks a device; keep the process's own choice."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _result_masks(result: Results, frame_shape: tuple[int, int]) -> np.ndarray:
    """(M, H, W) bool instance masks of one ultralytics `Results` (M = 0 when nothing passed the thresholds)."""
    if result.masks is None:
        return np.zeros((0, *frame_shape), dtype=bool)
    return result.masks.data.bool().cpu().numpy()
