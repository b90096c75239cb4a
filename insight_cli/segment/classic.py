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
from insight_cli.segment.naming import match_object
from insight_cli.segment.detections import Detections

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def pack_colors(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> (...) int32 colour keys 0xRRGGBB."""
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def unpack_color(key: int) -> tuple[int, int, int]:
    return (key >> 16) & 255, (key >> 8) & 255, key & 255


def background_model(frames: np.ndarray) -> np.ndarray:
    """Most frequent colour key per pixel over frames (T, H, W, 3) -> (H, W) int32."""
    keys = pack_colors(frames).reshape(len(frames), -1)  # (T, H*W)
    palette, inverse = np.unique(keys, return_inverse=True)  # Atari screens use few colours
    pixels = keys.shape[1]
    votes = np.bincount((inverse.reshape(keys.shape) * pixels + np.arange(pixels)).ravel(), minlength=len(palette) * pixels)
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
        self._background_colors = np.array([pack_colors(np.array(c, np.uint8)) for c in game.background], np.int32)
        self._object_colors: list[tuple[int, np.ndarray]] = []  # (colour key, region mask)

    def fit(self, frames: np.ndarray) -> ClassicSegmenter:
        height, width = frames.shape[1:3]
        self._background = background_model(frames)
        # The most common colour on screen is background even in games without a catalogue.
        colors, counts = np.unique(self._background, return_counts=True)
        self._background_colors = np.union1d(self._background_colors, colors[counts.argmax()])
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
        background_colored = np.isin(keys, self._background_colors)
        catalogued = np.zeros_like(moving)
        for key, region in self._object_colors:
            catalogued |= (keys == key) & region
        # A wall that shares the ball's colour is static and a background colour: never an object.
        candidate = (moving & ~background_colored) | (catalogued & (moving | ~background_colored))
        if not candidate.any():
            return Detections.empty()
        height, width = keys.shape
        max_area = self.max_area_fraction * height * width
        boxes, areas, colors = [], [], []
        for key in np.unique(keys[candidate]):
            mask = candidate & (keys == key)
            labels, count = ndimage.label(ndimage.binary_dilation(mask, EIGHT_CONNECTED), structure=EIGHT_CONNECTED)
            labels[~mask] = 0
            sizes = np.bincount(labels.ravel(), minlength=count + 1)
            moving_sizes = np.bincount(labels[moving], minlength=count + 1)
            color = unpack_color(int(key))
            for index, slices in enumerate(ndimage.find_objects(labels), start=1):
                area = sizes[index]
                if slices is None or area < self.min_area or area > max_area:
                    continue
                rows, cols = slices
                box = (cols.start, rows.start, cols.stop, rows.stop)
                if moving_sizes[index] == 0 and match_object(self.game, box, color, (height, width)) is None:
                    continue
                boxes.append(box)
                areas.append(area)
                colors.append(color)
        if not boxes:
            return Detections.empty()
        return Detections(np.array(boxes, np.int32), np.array(areas, np.int32), np.array(colors, np.uint8))
