"""The classic backend: Atari screens are flat-coloured, so a background model plus connected
components per colour finds the objects in about a millisecond a frame, with no weights.

A pixel is a candidate object pixel when it differs from the background model (the per-pixel
most frequent colour over sample frames) and is not a known background colour, or when it has
the colour of a catalogued object inside that object's region (so static objects such as
shields, bricks and pellets are found too). Candidate pixels of one colour at most one pixel
apart form one object (sprites often have gaps). Static candidates (part of the background
model) are kept only when they fit a catalogued object's colour, region and size, so walls
that share a colour with the ball are not objects.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from insight_cli.games import GameSpec
from insight_cli.segment.detections import Detections
from insight_cli.segment.naming import match_object

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def pack_colors(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) uint32 colour keys, one per RGB colour (R | G << 8 | B << 16)."""
    padded = np.zeros(rgb.shape[:-1] + (4,), dtype=np.uint8)
    padded[..., :3] = rgb
    return padded.view("<u4")[..., 0]


def unpack_color(key: int) -> tuple[int, int, int]:
    return key & 255, (key >> 8) & 255, (key >> 16) & 255


def background_model(frames: np.ndarray) -> np.ndarray:
    """Most frequent colour key per pixel over frames (T, H, W, 3) -> (H, W) uint32."""
    keys = pack_colors(frames).reshape(len(frames), -1)  # (T, H*W)
    palette = np.unique(np.concatenate([np.unique(frame_keys) for frame_keys in keys]))  # Atari uses few colours
    inverse = np.searchsorted(palette, keys)
    pixels = keys.shape[1]
    votes = np.bincount((inverse * pixels + np.arange(pixels)).ravel(), minlength=len(palette) * pixels)
    return palette[votes.reshape(len(palette), pixels).argmax(axis=0)].reshape(frames.shape[1:3])


class ClassicSegmenter:
    """Background subtraction + connected components per colour.

    `fit(frames)` builds the background model from sample frames (T, H, W, 3); calling the
    segmenter on one (H, W, 3) frame returns its `Detections`.
    """

    def __init__(self, game: GameSpec, max_area_fraction: float = 0.25, min_area: int = 1):
        self.game = game
        self.max_area_fraction = max_area_fraction
        self.min_area = min_area
        self._background: np.ndarray | None = None
        self._background_colors = [int(pack_colors(np.array(color, np.uint8))) for color in game.background]
        self._object_colors: list[tuple[int, np.ndarray]] = []  # (colour key, region mask)

    def fit(self, frames: np.ndarray) -> ClassicSegmenter:
        height, width = frames.shape[1:3]
        self._background = background_model(frames)
        # The most common colour on screen is background even in games without a catalogue.
        colors, counts = np.unique(self._background, return_counts=True)
        self._background_colors = sorted(set(self._background_colors) | {int(colors[counts.argmax()])})
        regions: dict[int, np.ndarray] = {}
        rows, cols = np.mgrid[0:height, 0:width]
        for obj in self.game.objects:
            x0, y0, x1, y1 = obj.region
            inside = (cols >= x0 * width) & (cols < x1 * width) & (rows >= y0 * height) & (rows < y1 * height)
            for color in obj.colors:
                key = int(pack_colors(np.array(color, np.uint8)))
                regions[key] = regions.get(key, np.zeros_like(inside)) | inside
        self._object_colors = list(regions.items())
        return self

    def __call__(self, rgb: np.ndarray) -> Detections:
        if self._background is None:
            raise RuntimeError("ClassicSegmenter.fit must be called before segmenting")
        keys = pack_colors(rgb)
        moving = keys != self._background
        background_colored = np.zeros_like(moving)
        for key in self._background_colors:
            background_colored |= keys == key
        catalogued = np.zeros_like(moving)
        for key, region in self._object_colors:
            catalogued |= (keys == key) & region
        # A wall that shares the ball's colour is static and a background colour: never an object.
        candidate = (moving & ~background_colored) | (catalogued & (moving | ~background_colored))
        rows, cols = np.nonzero(candidate)
        if len(rows) == 0:
            return Detections.empty()
        pixel_keys = keys[rows, cols]
        order = np.argsort(pixel_keys, kind="stable")
        rows, cols, pixel_keys, pixel_moving = rows[order], cols[order], pixel_keys[order], moving[rows, cols][order]
        starts = np.flatnonzero(np.diff(pixel_keys)) + 1
        max_area = self.max_area_fraction * keys.size
        boxes, areas, colors = [], [], []
        for group in np.split(np.arange(len(rows)), starts):
            color = unpack_color(int(pixel_keys[group[0]]))
            for box, area, any_moving in _components(rows[group], cols[group], pixel_moving[group]):
                if area < self.min_area or area > max_area:
                    continue
                if not any_moving and match_object(self.game, box, color, keys.shape) is None:
                    continue
                boxes.append(box)
                areas.append(area)
                colors.append(color)
        if not boxes:
            return Detections.empty()
        return Detections(np.array(boxes, np.int32), np.array(areas, np.int32), np.array(colors, np.uint8))


def _components(rows: np.ndarray, cols: np.ndarray, moving: np.ndarray):
    """Objects among one colour's pixels: pixels at most one pixel apart belong together.

    Works on the pixels' bounding crop, not the whole frame. Yields (box, area, any pixel moving)
    with box x0, y0, x1, y1 in frame pixels.
    """
    top, left = rows.min() - 1, cols.min() - 1
    local_rows, local_cols = rows - top, cols - left
    mask = np.zeros((local_rows.max() + 2, local_cols.max() + 2), dtype=bool)
    mask[local_rows, local_cols] = True
    labels, count = ndimage.label(ndimage.binary_dilation(mask, EIGHT_CONNECTED), structure=EIGHT_CONNECTED)
    labels[~mask] = 0
    pixel_labels = labels[local_rows, local_cols]
    areas = np.bincount(pixel_labels, minlength=count + 1)
    moving_counts = np.bincount(pixel_labels, weights=moving, minlength=count + 1)
    for label, slices in enumerate(ndimage.find_objects(labels), start=1):
        if slices is None:
            continue
        row_slice, col_slice = slices
        box = (col_slice.start + left, row_slice.start + top, col_slice.stop + left, row_slice.stop + top)
        yield box, int(areas[label]), bool(moving_counts[label] > 0)
