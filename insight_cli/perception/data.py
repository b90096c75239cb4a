"""A frame-symbol dataset decoded once into compact tensors for perception training (pretrain,
train's refinement) and for reading states through the perception (extract-policy, explain).

Frames stay uint8 (one 84x84 frame per dataset row, stacks gathered by index); labels are
built per frame from objects.parquet and gathered into per-stack targets on the fly, so no PNG
is decoded and no per-sample Python runs in the training loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from insight_cli.dataset import Dataset
from insight_cli.envs.preprocessing import FRAME_SIZE
from insight_cli.errors import InsightError, UsageError
from insight_cli.perception import MAX_OBJECTS
from insight_cli.perception.losses import PerceptionTargets


def choose_slots(dataset: Dataset, n_objects: int | str, min_seen: float = 0.0) -> list[dict]:
    """The dataset tracks that get object slots, as catalogue entries, slot order = track id.

    "auto": every track seen in at least `min_seen` of the frames (a share), or the MAX_OBJECTS
    most often seen when there are more. An explicit K must hold every such track.
    """
    tracks = sorted(dataset.meta["objects"], key=lambda entry: entry["track_id"])
    frames = max(dataset.meta["counts"]["frames"], 1)
    tracks = [entry for entry in tracks if entry["frames_seen"] >= min_seen * frames]
    if not tracks:
        raise UsageError(
            f"no object is seen in {min_seen:.0%} of the frames of {dataset.path}", hint="lower --min-seen"
        )
    if n_objects == "auto":
        if len(tracks) > MAX_OBJECTS:
            frequent = sorted(tracks, key=lambda entry: -entry["frames_seen"])[:MAX_OBJECTS]
            tracks = sorted(frequent, key=lambda entry: entry["track_id"])
        return tracks
    slots = int(n_objects)
    if slots < len(tracks):
        raise UsageError(
            f"--n-objects {slots} is smaller than the dataset's {len(tracks)} objects",
            hint=f"use --n-objects auto, at least {len(tracks)}, or a higher --min-seen",
        )
    if slots > MAX_OBJECTS:
        raise UsageError(f"--n-objects {slots} is more than the {MAX_OBJECTS} slots the network supports")
    return tracks


def slot_entries(slots: list[dict]) -> list[dict]:
    """The object slots as a checkpoint's meta["objects"] keeps them: slot, track id, name."""
    return [{"slot": slot, "track_id": entry["track_id"], "name": entry["name"]} for slot, entry in enumerate(slots)]


def slots_of(meta: dict) -> list[dict]:
    """The object slots of a perception or run checkpoint's meta, in slot order."""
    return [{"track_id": entry["track_id"], "name": entry["name"]} for entry in meta["objects"]]


@dataclass
class PerceptionData:
    """Everything one training or evaluation batch is gathered from, on one device.

    frames: (N + 1, 84, 84) uint8, row 0 zero padding; stack_rows: (N, 4) rows into frames;
    exists (N, K, 4) bool; coordinates (N, K, 4, 2); shape (N, K, 2); margins (N, 4) int pixels
    the stack may move left, right, up, down keeping every object on screen.
    """

    frames: torch.Tensor
    stack_rows: torch.Tensor
    exists: torch.Tensor
    coordinates: torch.Tensor
    shape: torch.Tensor
    margins: torch.Tensor
    train_rows: torch.Tensor
    test_rows: torch.Tensor
    frequency: torch.Tensor  # (K,) fraction of train stacks in which each slot's object is present

    @property
    def n_objects(self) -> int:
        return self.exists.shape[1]

    def batch(self, rows: torch.Tensor) -> tuple[torch.Tensor, PerceptionTargets]:
        """(B,) rows -> (B, 4, 84, 84) uint8 stacks and their targets."""
        stacks = self.frames[self.stack_rows[rows]]
        return stacks, PerceptionTargets(self.exists[rows], self.coordinates[rows], self.shape[rows])


def decode(dataset: Dataset, slots: list[dict], device: torch.device) -> PerceptionData:
    frame_count = dataset.frames.num_rows
    slot_of_track = {entry["track_id"]: slot for slot, entry in enumerate(slots)}
    k = max(len(slots), 1)
    objects = dataset.objects.to_pydict()
    track_ids = np.asarray(objects["track_id"], dtype=np.int64)
    _check_catalogued(dataset, track_ids)
    frame_rows = np.asarray(objects["frame_id"], dtype=np.int64)  # frame_id is the row of frames.parquet
    lookup = np.full(max(track_ids.max(initial=-1), max(slot_of_track, default=-1)) + 1, -1, dtype=np.int64)
    for track_id, slot in slot_of_track.items():
        lookup[track_id] = slot
    slot_rows = lookup[track_ids] if len(track_ids) else track_ids
    kept = slot_rows >= 0
    if not kept.any():
        raise InsightError(
            f"{dataset.path}: objects.parquet holds none of the {len(slots)} objects to learn",
            hint="segment the game again",
        )
    frame_rows, slot_rows = frame_rows[kept], slot_rows[kept]

    def column(name):
        """A box column of the kept rows; a NaN target would train a NaN network, so none passes."""
        values = dataset.objects.column(name).to_numpy().astype(np.float32)[kept]  # nulls become NaN
        bad = ~np.isfinite(values)
        if bad.any():
            raise InsightError(
                f"{dataset.path}: objects.parquet has a non-finite {name} in {bad.sum()} rows, "
                f"the first in frame {frame_rows[bad][0]}",
                hint="segment the game again",
            )
        return values

    frame_exists = np.zeros((frame_count, k), dtype=bool)
    frame_exists[frame_rows, slot_rows] = True
    frame_coordinates = np.zeros((frame_count, k, 2), dtype=np.float32)
    frame_coordinates[frame_rows, slot_rows] = np.stack([column("cx"), column("cy")], axis=1)
    frame_shape = np.zeros((frame_count, k, 2), dtype=np.float32)
    frame_shape[frame_rows, slot_rows] = np.stack([column("y1") - column("y0"), column("x1") - column("x0")], axis=1)
    # Per frame, the free space around all its objects (fractions of the frame).
    frame_margins = np.ones((frame_count, 4), dtype=np.float32)  # left, right, top, bottom
    for index, (edge, sign) in enumerate((("x0", 1), ("x1", -1), ("y0", 1), ("y1", -1))):
        free = column(edge) if sign > 0 else 1.0 - column(edge)
        np.minimum.at(frame_margins[:, index], frame_rows, free)

    stack_rows = dataset.stack_indices()  # (N, 4), -1 for padding
    padded = stack_rows < 0
    safe_rows = np.where(padded, 0, stack_rows)
    exists = frame_exists[safe_rows].transpose(0, 2, 1) & ~padded[:, None, :]  # (N, K, 4)
    coordinates = frame_coordinates[safe_rows].transpose(0, 2, 1, 3) * exists[..., None]
    margins = np.where(padded[..., None], 1.0, frame_margins[safe_rows]).min(axis=1)
    margins_px = np.floor(np.clip(margins, 0, 1) * FRAME_SIZE).astype(np.int64)

    splits = np.asarray(dataset.frames.column("split").to_pylist())
    train_rows, test_rows = np.flatnonzero(splits == "train"), np.flatnonzero(splits == "test")
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise InsightError(f"{dataset.path} needs frames in both the train and test splits to pretrain on")
    frequency = exists[train_rows].mean(axis=(0, 2))

    gray = np.concatenate([np.zeros((1, FRAME_SIZE, FRAME_SIZE), np.uint8), dataset.gray_frames()])

    def tensor(array, dtype=None):
        return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)

    return PerceptionData(
        frames=tensor(gray),
        stack_rows=tensor(stack_rows + 1),
        exists=tensor(exists),
        coordinates=tensor(coordinates),
        shape=tensor(frame_shape),
        margins=tensor(margins_px),
        train_rows=tensor(train_rows),
        test_rows=tensor(test_rows),
        frequency=tensor(frequency, torch.float32),
    )


def _check_catalogued(dataset: Dataset, track_ids: np.ndarray) -> None:
    """Every object must be one of dataset.json's tracks: the objects of a track missing there
    would be dropped in silence, and a network trained on no objects."""
    unknown = np.setdiff1d(track_ids, [entry["track_id"] for entry in dataset.meta["objects"]])
    if len(unknown):
        listed = ", ".join(map(str, unknown[:5])) + (", ..." if len(unknown) > 5 else "")
        raise InsightError(
            f"{dataset.path}: objects.parquet has track ids that dataset.json does not list ({listed})",
            hint="were the two files written by different runs? segment the game again",
        )


def shift_batch(
    stacks: torch.Tensor,
    targets: PerceptionTargets,
    margins: torch.Tensor,
    max_shift: int,
    generator: torch.Generator,
    background: torch.Tensor | None = None,
) -> tuple[torch.Tensor, PerceptionTargets]:
    """Translate each stack's objects by a random whole-pixel offset that keeps every object on
    screen (at most max_shift pixels); object coordinates move with them, sizes do not.

    With the game's `background` (84, 84) in [0, 1] only what differs from it moves and the
    static picture stays where it is, as in play. Shifting whole frames instead moves Pong's
    walls against the background the encoder subtracts, and the bright bands that leaves
    drown the paddles (measured: the player's y error 21 px after 2,000 steps, against 9 px
    unshifted).

    stacks (B, 4, 84, 84) uint8; margins (B, 4) pixels free left, right, top, bottom.
    """
    batch = stacks.shape[0]
    limit = margins.clamp(max=max_shift)
    uniform = torch.rand(batch, 2, generator=generator, device=generator.device).to(stacks.device)
    dx = (-limit[:, 0] + uniform[:, 0] * (limit[:, 0] + limit[:, 1] + 1)).floor().clamp(max=limit[:, 1])
    dy = (-limit[:, 2] + uniform[:, 1] * (limit[:, 2] + limit[:, 3] + 1)).floor().clamp(max=limit[:, 3])
    # Sample grid: output pixel (x, y) reads input (x - dx, y - dy); nearest keeps values exact.
    step = 2.0 / FRAME_SIZE
    theta = torch.zeros(batch, 2, 3, device=stacks.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    theta[:, 0, 2], theta[:, 1, 2] = -dx * step, -dy * step
    grid = F.affine_grid(theta, list(stacks.shape), align_corners=False)
    if background is None:
        shifted = F.grid_sample(stacks.float(), grid, mode="nearest", padding_mode="border", align_corners=False)
    else:
        picture = background.to(stacks.device).float() * 255.0
        moving = F.grid_sample(
            stacks.float() - picture, grid, mode="nearest", padding_mode="zeros", align_corners=False
        )
        shifted = (moving + picture).clamp(0.0, 255.0)
    offset = torch.stack([dx, dy], dim=1).view(batch, 1, 1, 2) / FRAME_SIZE
    coordinates = (targets.coordinates + offset) * targets.exists.unsqueeze(-1)
    return shifted.round().to(torch.uint8), PerceptionTargets(targets.exists, coordinates, targets.shape)
