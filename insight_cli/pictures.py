"""Pictures people check at a glance: frames with objects' boxes, centres and names drawn,
written as an mp4 or a PNG contact sheet."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

SHORT_SIDE = 480  # frames are tiny (Atari 210x160, MetaDrive 84x84): draw on an upscaled copy so labels are legible


def _track_color(track_id: int) -> tuple[int, int, int]:
    hue = (track_id * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return tuple(int(c) for c in bgr[::-1])


def scale(rgb: np.ndarray) -> int:
    """The whole factor that brings the frame's short side to at least SHORT_SIDE pixels."""
    return max(1, -(-SHORT_SIDE // min(rgb.shape[:2])))


def upscale(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) -> (sH, sW, 3) with s = scale(rgb) (3 for Atari), pixels kept sharp."""
    factor = scale(rgb)
    return cv2.resize(rgb, (rgb.shape[1] * factor, rgb.shape[0] * factor), interpolation=cv2.INTER_NEAREST)


def annotate(rgb: np.ndarray, boxes: np.ndarray, track_ids, names) -> np.ndarray:
    """(H, W, 3) frame -> the upscaled frame with each object's box and `id:name`."""
    canvas, factor = upscale(rgb), scale(rgb)
    for (x0, y0, x1, y1), track_id, name in zip(boxes, track_ids, names):
        color = _track_color(int(track_id))
        top_left, bottom_right = (int(x0) * factor - 1, int(y0) * factor - 1), (int(x1) * factor, int(y1) * factor)
        cv2.rectangle(canvas, top_left, bottom_right, color, 1)
        label_y = top_left[1] - 3 if top_left[1] > 12 else bottom_right[1] + 10
        cv2.putText(canvas, f"{track_id}:{name}", (top_left[0], label_y), cv2.FONT_HERSHEY_PLAIN, 0.8, color, 1)
    return canvas


def mark_points(canvas: np.ndarray, points: np.ndarray, labels: list[str], color=(240, 60, 60)) -> np.ndarray:
    """Draw a cross and a label at each (x, y) in [0, 1] (fractions of the canvas), in place."""
    size = np.array([canvas.shape[1], canvas.shape[0]])
    for point, label in zip(points, labels):
        x, y = (int(v) for v in np.asarray(point) * size)
        cv2.drawMarker(canvas, (x, y), color, cv2.MARKER_CROSS, 10, 1)
        cv2.putText(canvas, label, (x + 6, y - 4), cv2.FONT_HERSHEY_PLAIN, 0.8, color, 1)
    return canvas


def arrow(canvas: np.ndarray, start, direction, label: str, color=(255, 220, 0), length: int = 24) -> np.ndarray:
    """An arrow from `start` ((x, y) in [0, 1] of the canvas) along `direction` (dx, dy), in place."""
    size = np.array([canvas.shape[1], canvas.shape[0]])
    origin = (np.asarray(start) * size).astype(int)
    step = np.asarray(direction, dtype=float)
    tip = (origin + step / (np.linalg.norm(step) or 1.0) * length).astype(int)
    cv2.arrowedLine(canvas, tuple(int(v) for v in origin), tuple(int(v) for v in tip), color, 1, tipLength=0.3)
    (width, _), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_PLAIN, 0.8, 1)
    # beyond the tip, on the side the arrow points to, unless that leaves the canvas
    right = step[0] >= 0 and tip[0] + 3 + width < canvas.shape[1]
    x = int(tip[0]) + 3 if right else max(0, int(tip[0]) - 3 - width)
    cv2.putText(canvas, label, (x, int(tip[1]) + 4), cv2.FONT_HERSHEY_PLAIN, 0.8, color, 1)
    return canvas


def png_bytes(rgb: np.ndarray) -> bytes:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return encoded.tobytes()


def caption(canvas: np.ndarray, text: str, color=(255, 255, 255)) -> np.ndarray:
    """A line of text on a dark band at the top, in place."""
    cv2.rectangle(canvas, (0, 0), (canvas.shape[1], 14), (0, 0, 0), -1)
    cv2.putText(canvas, text, (3, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, color, 1)
    return canvas


def write_video(path: Path, frames: list[np.ndarray], fps: int = 15) -> None:
    """An H.264 mp4, written under a temporary name and renamed into place."""
    import imageio.v3 as iio

    path = Path(path)
    temporary = path.with_name(f".{path.stem}.tmp{path.suffix}")
    even = [frame[: frame.shape[0] // 2 * 2, : frame.shape[1] // 2 * 2] for frame in frames]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        iio.imwrite(temporary, np.stack(even), fps=fps, codec="libx264", macro_block_size=1)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def write_contact_sheet(path: Path, frames: list[np.ndarray], columns: int = 4) -> None:
    """Frames laid out in a grid, row by row, as one PNG."""
    rows = -(-len(frames) // columns)
    height, width = frames[0].shape[:2]
    sheet = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
    for index, frame in enumerate(frames):
        row, column = divmod(index, columns)
        sheet[row * height : (row + 1) * height, column * width : (column + 1) * width] = frame
    cv2.imwrite(str(path), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
