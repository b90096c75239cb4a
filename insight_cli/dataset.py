"""The frame-symbol dataset: the one module that writes and reads it.

A dataset is a directory:
    frames.parquet   one row per frame: frame_id, episode, step, split, action, reward,
                     rgb (PNG bytes of the full frame), gray (84*84 bytes: the newest frame of
                     the training view; stacks are rebuilt by index within an episode), and
                     for games with an ego state (MetaDrive) a `state` column: its values on
                     this frame
    objects.parquet  one row per object per frame: frame_id, track_id, name, cx, cy, x0, y0,
                     x1, y1 (fractions of the frame, x right, y down), area (fraction of the
                     frame), r, g, b (mean colour)
    dataset.json     schema version, game, backend, seed, counts, object catalogue, fingerprint

Written into a temporary sibling directory and renamed into place when complete, so an
interrupted run never leaves a half-written dataset.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from insight_cli import __version__
from insight_cli.envs.preprocessing import FRAME_SIZE, STACK
from insight_cli.errors import InsightError
from insight_cli.runtime import current_umask

SCHEMA_VERSION = 1
KIND = "insight-dataset"
TEST_FRACTION = 0.2

FRAMES_SCHEMA = pa.schema(
    [
        ("frame_id", pa.int64()),
        ("episode", pa.int32()),
        ("step", pa.int32()),
        ("split", pa.string()),
        ("action", pa.int16()),  # action taken on this frame (-1: unknown, e.g. a recording)
        ("reward", pa.float32()),  # reward received on reaching this frame
        ("rgb", pa.binary()),
        ("gray", pa.binary()),
    ]
)
STATE_COLUMN = pa.field("state", pa.list_(pa.float32()))  # optional: only games with an ego state
OBJECTS_SCHEMA = pa.schema(
    [
        ("frame_id", pa.int64()),
        ("track_id", pa.int32()),
        ("name", pa.string()),
        ("cx", pa.float32()),
        ("cy", pa.float32()),
        ("x0", pa.float32()),
        ("y0", pa.float32()),
        ("x1", pa.float32()),
        ("y1", pa.float32()),
        ("area", pa.float32()),
        ("r", pa.uint8()),
        ("g", pa.uint8()),
        ("b", pa.uint8()),
    ]
)


@dataclass
class Dataset:
    path: Path
    meta: dict
    frames: pa.Table
    objects: pa.Table

    @property
    def game(self) -> str:
        return self.meta["game"]

    @property
    def track_names(self) -> dict[int, str]:
        return {int(entry["track_id"]): entry["name"] for entry in self.meta["objects"]}

    def gray_frames(self) -> np.ndarray:
        """(N, 84, 84) uint8, one per row of frames.parquet, decoded in one go."""
        column = self.frames.column("gray").combine_chunks()
        data = np.frombuffer(column.buffers()[2], dtype=np.uint8, count=len(column) * FRAME_SIZE * FRAME_SIZE)
        return data.reshape(len(column), FRAME_SIZE, FRAME_SIZE)

    def states(self) -> np.ndarray | None:
        """(N, S) float32 ego state of every frame, or None for games without one."""
        if STATE_COLUMN.name not in self.frames.column_names:
            return None
        column = self.frames.column(STATE_COLUMN.name).combine_chunks()
        return column.flatten().to_numpy().reshape(len(column), -1)

    def stack_indices(self) -> np.ndarray:
        """(N, 4) int64: for each frame, the rows of the frames in its training view, oldest
        first; -1 where the view is zero padding (the first steps of an episode)."""
        return stack_indices(self.frames.column("episode").to_numpy(), self.frames.column("step").to_numpy())

    def rgb(self, row: int) -> np.ndarray:
        """The full-resolution frame of one row, (H, W, 3) uint8."""
        import cv2

        png = np.frombuffer(self.frames.column("rgb")[row].as_py(), dtype=np.uint8)
        return cv2.cvtColor(cv2.imdecode(png, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def stack_indices(episodes: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Rows of each frame's 4-frame stack; frames must be stored in play order."""
    rows = np.arange(len(steps))
    offsets = np.arange(-(STACK - 1), 1)  # -3..0
    indices = rows[:, None] + offsets[None, :]
    valid = offsets[None, :] >= -steps[:, None]  # no further back than the episode's start
    clipped = np.clip(indices, 0, None)
    valid &= episodes[clipped] == episodes[:, None]
    return np.where(valid, indices, -1)


def assign_splits(episodes: np.ndarray, test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """80/20 train/test by contiguous episode blocks: the last episodes (about a fifth of the
    frames) are the test split. A single episode is cut at 80% of its frames instead."""
    total = len(episodes)
    unique, starts = np.unique(episodes, return_index=True)
    order = np.argsort(starts)
    unique, starts = unique[order], starts[order]
    split = np.full(total, "train", dtype=object)
    if len(unique) == 1:
        split[int(round(total * (1 - test_fraction))) :] = "test"
        return split
    first_test = next((i for i, start in enumerate(starts) if start >= total * (1 - test_fraction)), len(unique) - 1)
    first_test = max(1, min(first_test, len(unique) - 1))
    split[starts[first_test] :] = "test"
    return split


class DatasetWriter:
    """Collect frames and objects, then `finish()` writes the dataset and renames it into place.

    Used as a context manager: leaving the block with an exception removes the temporary
    directory and leaves any existing dataset at `path` untouched.
    """

    def __init__(self, path: Path, meta: dict):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.tmp-", dir=self.path.parent))
            self.staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; a dataset is not
        except OSError as error:
            raise InsightError(f"cannot write a dataset at {self.path}: {error.strerror}") from error
        self.meta = dict(meta)
        self._frames: dict[str, list] = {name: [] for name in FRAMES_SCHEMA.names if name != "split"}
        self._objects: dict[str, list] = {name: [] for name in OBJECTS_SCHEMA.names}
        self._states: list[np.ndarray] = []

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    @property
    def num_frames(self) -> int:
        return len(self._frames["frame_id"])

    def add_frame(self, episode: int, step: int, rgb_png: bytes, gray: np.ndarray, action: int, reward: float,
                  state: np.ndarray | None = None) -> int:
        """Append one frame (with its ego state: every frame or none); returns its frame_id."""
        if gray.shape != (FRAME_SIZE, FRAME_SIZE) or gray.dtype != np.uint8:
            raise ValueError(f"gray frame must be ({FRAME_SIZE}, {FRAME_SIZE}) uint8, got {gray.shape} {gray.dtype}")
        frame_id = self.num_frames
        if frame_id and (state is None) != (not self._states):
            raise ValueError("give an ego state with every frame or with none")
        if state is not None:
            self._states.append(np.asarray(state, np.float32))
        for name, value in zip(
            ("frame_id", "episode", "step", "action", "reward", "rgb", "gray"),
            (frame_id, episode, step, action, reward, rgb_png, gray.tobytes()),
        ):
            self._frames[name].append(value)
        return frame_id

    def add_objects(self, frame_id: int, track_ids, names, boxes: np.ndarray, areas, colors, frame_shape) -> None:
        """Objects of one frame; boxes (M, 4) in pixels x0, y0, x1, y1 of a frame of frame_shape (H, W)."""
        height, width = frame_shape[:2]
        scaled = np.asarray(boxes, dtype=np.float32) / np.array([width, height, width, height], dtype=np.float32)
        count = len(scaled)
        self._objects["frame_id"] += [frame_id] * count
        self._objects["track_id"] += list(track_ids)
        self._objects["name"] += list(names)
        self._objects["cx"] += list((scaled[:, 0] + scaled[:, 2]) / 2)
        self._objects["cy"] += list((scaled[:, 1] + scaled[:, 3]) / 2)
        for index, edge in enumerate(("x0", "y0", "x1", "y1")):
            self._objects[edge] += list(scaled[:, index])
        self._objects["area"] += list(np.asarray(areas, dtype=np.float32) / (height * width))
        colors = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
        for index, channel in enumerate("rgb"):
            self._objects[channel] += list(colors[:, index])

    def finish(self, catalogue: list[dict]) -> Dataset:
        """Write everything and move it into place; `catalogue` lists the tracks
        ({track_id, name, ...}) in the order later stages should use as object slots."""
        if self.num_frames == 0:
            raise InsightError("no frames were collected, so no dataset was written")
        episodes = np.asarray(self._frames["episode"], dtype=np.int32)
        splits = assign_splits(episodes)
        frames = pa.table({**self._frames, "split": list(splits)}).select(FRAMES_SCHEMA.names).cast(FRAMES_SCHEMA)
        if self._states:
            frames = frames.append_column(STATE_COLUMN, pa.array(list(np.stack(self._states)), STATE_COLUMN.type))
        objects = pa.table(self._objects, schema=OBJECTS_SCHEMA)
        pq.write_table(frames, self.staging / "frames.parquet")
        pq.write_table(objects, self.staging / "objects.parquet")
        counts = {
            "frames": self.num_frames,
            "episodes": int(len(np.unique(episodes))),
            "objects": objects.num_rows,
            "tracks": len(catalogue),
            "train_frames": int((splits == "train").sum()),
            "test_frames": int((splits == "test").sum()),
        }
        self.meta.update(
            kind=KIND,
            schema_version=SCHEMA_VERSION,
            insight_version=__version__,
            counts=counts,
            objects=catalogue,
            fingerprint=_fingerprint(self.staging),
        )
        (self.staging / "dataset.json").write_text(json.dumps(self.meta, indent=2, default=_json_default))
        _replace_directory(self.staging, self.path)
        return load_dataset(self.path)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _fingerprint(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in ("frames.parquet", "objects.parquet"):
        with open(directory / name, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def _replace_directory(new: Path, target: Path) -> None:
    """Move `new` to `target`; an existing `target` is removed only after `new` is in place."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def load_dataset(path: Path) -> Dataset:
    """Read and validate a dataset directory; anything foreign or corrupt is a one-line error."""
    path = Path(path)
    hint = "create one with `insight segment`"
    if not path.is_dir():
        raise InsightError(f"no dataset at {path}", hint=hint)
    try:
        meta = json.loads((path / "dataset.json").read_text())
    except FileNotFoundError:
        raise InsightError(f"{path} has no dataset.json, so it is not an insight dataset", hint=hint) from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise InsightError(f"{path / 'dataset.json'} is corrupt (not JSON)", hint=hint) from None
    if not isinstance(meta, dict) or meta.get("kind") != KIND:
        raise InsightError(f"{path} is not an insight dataset (dataset.json has no kind {KIND!r})", hint=hint)
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise InsightError(
            f"{path} has dataset schema version {meta.get('schema_version')}, this insight reads {SCHEMA_VERSION}",
            hint="re-create it with this version's `insight segment`",
        )
    tables = {}
    for name, schema in (("frames", FRAMES_SCHEMA), ("objects", OBJECTS_SCHEMA)):
        file = path / f"{name}.parquet"
        try:
            table = pq.read_table(file)
        except FileNotFoundError:
            raise InsightError(f"{file} is missing", hint=hint) from None
        except (pa.ArrowInvalid, OSError) as error:
            raise InsightError(f"{file} is corrupt: {error}", hint=hint) from None
        missing = [column for column in schema.names if column not in table.column_names]
        if missing:
            raise InsightError(f"{file} lacks columns {', '.join(missing)}", hint=hint)
        optional = [STATE_COLUMN.name] if name == "frames" and STATE_COLUMN.name in table.column_names else []
        tables[name] = table.select(schema.names + optional)
    if tables["frames"].num_rows != meta["counts"]["frames"]:
        raise InsightError(f"{path} is inconsistent: dataset.json and frames.parquet disagree on the frame count")
    return Dataset(path, meta, tables["frames"], tables["objects"])
