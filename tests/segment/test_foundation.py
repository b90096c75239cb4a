"""FastSAM and SAM segmenters, loaded through their real loaders from randomly initialised real architectures.

Random weights give arbitrary masks, so the run tests check the `Detections` contract, not what is found.
"""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# Before anything imports ultralytics: it must never try to download (weights, fonts, pip packages).
os.environ["YOLO_OFFLINE"] = "1"
os.environ["YOLO_AUTOINSTALL"] = "false"

from insight_cli.errors import InsightError  # noqa: E402
from insight_cli.segment.detections import Detections  # noqa: E402
from insight_cli.segment.foundation import FastSamSegmenter, SamSegmenter, _sam_model_type  # noqa: E402
from insight_cli.segment.torchvision_compat import ensure_torchvision, nms_fallback  # noqa: E402

DEVICES = [
    pytest.param(torch.device("cpu"), id="cpu"),
    pytest.param(
        torch.device("cuda"),
        id="cuda",
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    ),
]


def synthetic_frames(count: int = 2) -> np.ndarray:
    """(count, 210, 160, 3) uint8: a few coloured rectangles on a dark background, like an Atari screen."""
    frames = np.full((count, 210, 160, 3), 12, dtype=np.uint8)
    rng = np.random.default_rng(0)
    for frame in frames:
        for _ in range(4):
            y, x = rng.integers(0, 180), rng.integers(0, 130)
            height, width = rng.integers(4, 30), rng.integers(4, 30)
            frame[y : y + height, x : x + width] = rng.integers(60, 256, size=3)
    return frames


def assert_valid_detections(detections: Detections, height: int = 210, width: int = 160) -> None:
    assert isinstance(detections, Detections)
    count = len(detections)
    assert detections.boxes.shape == (count, 4) and detections.boxes.dtype == np.int32
    assert detections.areas.shape == (count,) and detections.areas.dtype == np.int32
    assert detections.colors.shape == (count, 3) and detections.colors.dtype == np.uint8
    x0, y0, x1, y1 = detections.boxes.T
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= width).all() and (y1 <= height).all()
    assert (x0 < x1).all() and (y0 < y1).all()
    assert (detections.areas > 0).all() and (detections.areas <= (x1 - x0) * (y1 - y0)).all()


# --- FastSAM -----------------------------------------------------------------------------------------------------


def save_ultralytics_checkpoint(model: torch.nn.Module, path: Path) -> Path:
    """Save like ultralytics' trainer does: the whole module in half precision under "model"."""
    torch.save({"model": model.half(), "ema": None, "train_args": {"task": "segment", "imgsz": 640}}, path)
    return path


@pytest.fixture(scope="module")
def fastsam_checkpoint(tmp_path_factory) -> Path:
    """FastSAM-s.pt with random weights: FastSAM-s is YOLOv8-s-seg with a single 'object' class."""
    ensure_torchvision()
    from ultralytics.nn.tasks import SegmentationModel

    torch.manual_seed(1)  # with seed 0 every random-weight mask is empty, so the mask path would go untested
    model = SegmentationModel("yolov8s-seg.yaml", nc=1, verbose=False)
    return save_ultralytics_checkpoint(model, tmp_path_factory.mktemp("fastsam") / "FastSAM-s.pt")


@pytest.mark.parametrize("device", DEVICES)
def test_fastsam_returns_valid_detections(fastsam_checkpoint, device):
    # confidence 0 lets random-weight predictions through, so the mask path is exercised.
    segmenter = FastSamSegmenter(fastsam_checkpoint, device, confidence=0.0)
    frames = synthetic_frames()
    threads = torch.get_num_threads()
    for frame in frames:
        detections = segmenter(frame)
        assert_valid_detections(detections)
        assert len(detections) > 0
    batch = segmenter.segment_batch(frames)
    assert len(batch) == len(frames)
    for detections in batch:
        assert_valid_detections(detections)
    assert torch.get_num_threads() == threads  # ultralytics' device setup must not leak into the process


def test_fastsam_checkpoint_without_training_arguments_still_segments(tmp_path, fastsam_checkpoint):
    bare = tmp_path / "FastSAM-s.pt"
    torch.save({"model": torch.load(fastsam_checkpoint, weights_only=False)["model"]}, bare)
    assert_valid_detections(FastSamSegmenter(bare, torch.device("cpu"), confidence=0.0)(synthetic_frames(1)[0]))


def test_fastsam_default_confidence_runs(fastsam_checkpoint):
    # Random weights score far below 0.4: nothing found is a valid answer, not an error.
    assert_valid_detections(FastSamSegmenter(fastsam_checkpoint, torch.device("cpu"))(synthetic_frames(1)[0]))


@pytest.mark.parametrize("checkpoint", [None, Path("/nonexistent/FastSAM-s.pt")])
def test_fastsam_missing_checkpoint_says_where_to_get_it(checkpoint):
    with pytest.raises(InsightError) as raised:
        FastSamSegmenter(checkpoint, torch.device("cpu"))
    message = str(raised.value)
    assert "FastSAM" in message and "FastSAM-s.pt" in message and "--checkpoint" in message
    assert "\n" not in message


def test_fastsam_corrupt_checkpoints_are_insight_errors(tmp_path, fastsam_checkpoint):
    garbage = tmp_path / "FastSAM-s.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    truncated = tmp_path / "FastSAM-x.pt"
    truncated.write_bytes(fastsam_checkpoint.read_bytes()[:4096])
    for path in (garbage, truncated):
        with pytest.raises(InsightError, match="cannot load FastSAM weights") as raised:
            FastSamSegmenter(path, torch.device("cpu"))
        assert "\n" not in str(raised.value)


def test_fastsam_rejects_a_detection_only_checkpoint(tmp_path):
    ensure_torchvision()
    from ultralytics.nn.tasks import DetectionModel

    detector = save_ultralytics_checkpoint(DetectionModel("yolov8n.yaml", nc=1, verbose=False), tmp_path / "det.pt")
    with pytest.raises(InsightError, match="is not a FastSAM checkpoint"):
        FastSamSegmenter(detector, torch.device("cpu"))


# --- SAM ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sam_checkpoint(tmp_path_factory) -> Path:
    """sam_vit_b_01ec64.pth with random weights (the real ViT-B architecture, ~375 MB on disk)."""
    ensure_torchvision()
    from segment_anything import sam_model_registry

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("sam") / "sam_vit_b_01ec64.pth"
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), path)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_sam_returns_valid_detections(sam_checkpoint, device):
    # One frame and a 4 x 4 prompt grid keep the CPU run affordable (the ViT-B encoder alone takes ~15-30 s on two
    # cores); zero thresholds let random-weight masks through.
    segmenter = SamSegmenter(
        sam_checkpoint, device, points_per_side=4, predicted_iou_threshold=0.0, stability_threshold=0.0
    )
    assert segmenter.model_type == "vit_b"
    (detections,) = segmenter.segment_batch(synthetic_frames(1))
    assert_valid_detections(detections)


@pytest.mark.parametrize("checkpoint", [None, Path("/nonexistent/sam_vit_b_01ec64.pth")])
def test_sam_missing_checkpoint_says_where_to_get_it(checkpoint):
    with pytest.raises(InsightError) as raised:
        SamSegmenter(checkpoint, torch.device("cpu"))
    message = str(raised.value)
    assert "SAM" in message and "sam_vit_b_01ec64.pth" in message and "--checkpoint" in message
    assert "\n" not in message


def test_sam_unusable_checkpoints_are_insight_errors(tmp_path):
    garbage = tmp_path / "sam_vit_b_01ec64.pth"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(InsightError, match="cannot load SAM weights"):
        SamSegmenter(garbage, torch.device("cpu"))

    foreign = tmp_path / "sam_vit_l_0b3195.pth"
    torch.save({"backbone.weight": torch.zeros(3)}, foreign)
    with pytest.raises(InsightError, match="not a SAM ViT-B/L/H state dict"):
        SamSegmenter(foreign, torch.device("cpu"))

    # Right width (ViT-B) but nothing else: load_state_dict's complaint becomes a one-line InsightError.
    partial = tmp_path / "sam_vit_b_partial.pth"
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(768, 3, 16, 16)}, partial)
    with pytest.raises(InsightError, match="looks like SAM vit_b, but its weights do not fit") as raised:
        SamSegmenter(partial, torch.device("cpu"))
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("width,model_type", [(768, "vit_b"), (1024, "vit_l"), (1280, "vit_h")])
def test_sam_model_type_comes_from_the_encoder_width(width, model_type):
    state_dict = {"image_encoder.patch_embed.proj.weight": torch.empty(width, 3, 16, 16)}
    assert _sam_model_type(state_dict, Path("renamed.pth")) == model_type


# --- torchvision fallback ----------------------------------------------------------------------------------------


def reference_nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> list[int]:
    """The textbook greedy loop: visit boxes by decreasing score, keep one unless a kept box overlaps it too much."""
    kept: list[int] = []
    for index in np.argsort(-scores, kind="stable"):
        x0, y0, x1, y1 = boxes[index]
        for other in kept:
            ox0, oy0, ox1, oy1 = boxes[other]
            intersection = max(0.0, min(x1, ox1) - max(x0, ox0)) * max(0.0, min(y1, oy1) - max(y0, oy0))
            union = (x1 - x0) * (y1 - y0) + (ox1 - ox0) * (oy1 - oy0) - intersection
            if intersection / union > iou_threshold:
                break
        else:
            kept.append(int(index))
    return kept


def reference_batched_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_threshold: float) -> list:
    """NMS within each class separately; the survivors by decreasing score."""
    kept = []
    for label in np.unique(classes):
        members = np.flatnonzero(classes == label)
        kept += [int(members[i]) for i in reference_nms(boxes[members], scores[members], iou_threshold)]
    return sorted(kept, key=lambda index: -scores[index])


def random_boxes(rng: np.random.Generator, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(count, 4) float32 x0, y0, x1, y1 boxes on a 200 x 200 field, clustered so that many overlap; (count,) scores."""
    corners = rng.uniform(0, 160, size=(count, 2))
    sizes = rng.uniform(2, 40, size=(count, 2))
    boxes = np.concatenate([corners, corners + sizes], axis=1).astype(np.float32)
    return torch.from_numpy(boxes), torch.from_numpy(rng.permutation(count).astype(np.float32))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("count,iou_threshold", [(0, 0.5), (1, 0.5), (50, 0.3), (600, 0.5), (600, 0.9)])
def test_fallback_nms_matches_the_reference(rng, device, count, iou_threshold):
    boxes, scores = random_boxes(rng, count)  # 600 boxes span several IoU row blocks
    expected = reference_nms(boxes.numpy(), scores.numpy(), iou_threshold)
    kept = nms_fallback(boxes.to(device), scores.to(device), iou_threshold)
    assert kept.dtype == torch.int64 and kept.device.type == device.type
    assert kept.cpu().tolist() == expected


def test_torchvision_nms_works_after_ensure_torchvision(rng):
    torchvision = ensure_torchvision()  # compiled ops, or the fallback where they cannot load (as on CPU torch)
    boxes, scores = random_boxes(rng, 300)
    assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == reference_nms(boxes.numpy(), scores.numpy(), 0.5)
    classes = rng.integers(0, 3, size=300)
    kept = torchvision.ops.batched_nms(boxes, scores, torch.from_numpy(classes), 0.5)
    assert kept.tolist() == reference_batched_nms(boxes.numpy(), scores.numpy(), classes, 0.5)


def test_import_survives_torchvision_ops_that_cannot_load():
    """In a fresh interpreter where loading torchvision's compiled library fails, import and nms still work."""
    program = """
import torch

load_library = torch.ops.load_library
def refuse_torchvision(path):  # what a CUDA torchvision next to a CPU torch does
    if "torchvision" in str(path):
        raise OSError("simulated: torchvision's compiled ops cannot be loaded")
    load_library(path)
torch.ops.load_library = refuse_torchvision

from insight_cli.segment.torchvision_compat import ensure_torchvision, nms_fallback
torchvision = ensure_torchvision()
assert not torchvision.extension._has_ops()
boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
scores = torch.tensor([0.9, 0.8, 0.7])
assert torchvision.ops.nms(boxes, scores, 0.5).tolist() == [0, 2]
assert torchvision.ops.batched_nms(boxes, scores, torch.tensor([0, 1, 0]), 0.5).tolist() == [0, 1, 2]
import segment_anything  # imports torchvision.ops.boxes and torchvision.transforms
print("fallback ok")
"""
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "fallback ok" in done.stdout
    assert "pure-torch nms" in done.stderr  # the one-line warning
