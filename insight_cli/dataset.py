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
interrupted run never leaves a half-written dataset; frames and objects go to disk in chunks
as they come, so memory stays flat however many frames there are.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from insight_cli import __version__
from insight_cli.envs.preprocessing import FRAME_SIZE, STACK
from insight_cli.errors import InsightError
from insight_cli.files import process_alive
from insight_cli.runtime import current_umask

SCHEMA_VERSION = 1
KIND = "insight-dataset"
TEST_FRACTION = 0.2
CHUNK_FRAMES = 256  # frames (and their objects) held in memory before they are written out
# Everything segment writes into a dataset directory: one holding anything else is not ours to replace.
DATASET_FILES = frozenset({"frames.parquet", "objects.parquet", "dataset.json", "preview.mp4", "preview.png"})
UNSPLIT = "frames.unsplit.parquet"  # frames before their splits are known, in the staging directory
COUNTS = ("frames", "episodes", "objects", "tracks", "train_frames", "test_frames")

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


def is_object_name(name) -> bool:
    """Object names become Python identifiers in the exported policy: ASCII only, because
    Python folds Unicode identifiers (NFKC: "ﬁsh" is "fish") and two objects would be one."""
    return isinstance(name, str) and name.isascii() and name.isidentifier()


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


def check_replaceable(path: Path, replace: bool = False) -> None:
    """Writing a dataset deletes what is at `path`: allow it only for an earlier dataset (or an
    empty directory), or when the user said so (`replace`, segment's --force)."""
    path = Path(path)
    if replace or not (path.exists() or path.is_symlink()):
        return
    if path.is_dir() and _holds_only_a_dataset(path):
        return
    what = "a directory that is not only an insight dataset" if path.is_dir() else "a file"
    raise InsightError(
        f"{path} is {what}; writing the dataset there would delete it",
        hint="choose another --out, or pass --force to replace it",
    )


def _holds_only_a_dataset(directory: Path) -> bool:
    names = {entry.name for entry in directory.iterdir()}
    if not names:
        return True
    if not names <= DATASET_FILES or "dataset.json" not in names:
        return False
    try:
        meta = json.loads((directory / "dataset.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("kind") == KIND


def _remove_leftovers(path: Path) -> None:
    """Delete the hidden staging and replaced directories (.<name>.tmp-<pid>-*, .<name>.old-<pid>)
    that runs killed before they could clean up left next to `path`; a live run's are kept."""
    path = Path(path)
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:tmp-(?:(\d+)-)?[a-z0-9_]{{8}}|old-(\d+))")
    for entry in path.parent.iterdir():
        found = pattern.fullmatch(entry.name)
        pid = found and (found.group(1) or found.group(2))  # None in an older insight's names
        if found and not (pid and process_alive(int(pid))):
            _remove(entry)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


class DatasetWriter:
    """Add frames and objects (written out every CHUNK_FRAMES frames), then `finish()` writes
    the rest and renames the dataset into place.

    Used as a context manager: leaving the block with an exception removes the temporary
    directory and leaves any existing dataset at `path` untouched. `replace` allows replacing
    something at `path` that is not a dataset (see check_replaceable).
    """

    def __init__(self, path: Path, meta: dict, replace: bool = False):
        self.path = Path(path)
        self.replace = replace
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            _remove_leftovers(self.path)
            self.staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.tmp-{os.getpid()}-", dir=self.path.parent))
            self.staging.chmod(0o777 & ~current_umask())  # mkdtemp makes it private; a dataset is not
        except OSError as error:
            raise InsightError(f"cannot write a dataset at {self.path}: {error.strerror}") from error
        self.meta = dict(meta)
        self.num_frames = 0
        self.num_objects = 0
        self._frames: dict[str, list] = {name: [] for name in FRAMES_SCHEMA.names if name != "split"}
        self._objects: dict[str, list] = {name: [] for name in OBJECTS_SCHEMA.names}
        self._states: list[np.ndarray] = []
        self._with_state: bool | None = None  # fixed by the first frame
        self._episodes: list[np.ndarray] = []  # every frame's episode, for the splits at the end
        self._frames_out: pq.ParquetWriter | None = None  # opened by the first chunk
        self._objects_out: pq.ParquetWriter | None = None

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        self._close()
        shutil.rmtree(self.staging, ignore_errors=True)

    def add_frame(
        self,
        episode: int,
        step: int,
        rgb_png: bytes,
        gray: np.ndarray,
        action: int,
        reward: float,
        state: np.ndarray | None = None,
    ) -> int:
        """Append one frame (with its ego state: every frame or none); returns its frame_id."""
        if gray.shape != (FRAME_SIZE, FRAME_SIZE) or gray.dtype != np.uint8:
            raise ValueError(f"gray frame must be ({FRAME_SIZE}, {FRAME_SIZE}) uint8, got {gray.shape} {gray.dtype}")
        if len(self._frames["frame_id"]) >= CHUNK_FRAMES:  # before this frame: its objects come after it
            self._flush()
        if self._with_state is None:
            self._with_state = state is not None
        elif self._with_state != (state is not None):
            raise ValueError("give an ego state with every frame or with none")
        if state is not None:
            self._states.append(np.asarray(state, np.float32))
        frame_id = self.num_frames
        for name, value in zip(
            ("frame_id", "episode", "step", "action", "reward", "rgb", "gray"),
            (frame_id, episode, step, action, reward, rgb_png, gray.tobytes()),
        ):
            self._frames[name].append(value)
        self.num_frames += 1
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
        self.num_objects += count

    def _flush(self) -> None:
        """Write the frames and objects held in memory. Frames go to a file without their split,
        which only the last episode decides; finish() adds it."""
        frames = pa.table(self._frames, schema=_unsplit_schema())
        if self._with_state:
            frames = frames.append_column(STATE_COLUMN, pa.array(list(np.stack(self._states)), STATE_COLUMN.type))
        if self._frames_out is None:
            self._frames_out = pq.ParquetWriter(self.staging / UNSPLIT, frames.schema)
            self._objects_out = pq.ParquetWriter(self.staging / "objects.parquet", OBJECTS_SCHEMA)
        self._frames_out.write_table(frames)
        self._objects_out.write_table(pa.table(self._objects, schema=OBJECTS_SCHEMA))
        self._episodes.append(np.asarray(self._frames["episode"], dtype=np.int32))
        for column in (*self._frames.values(), *self._objects.values(), self._states):
            column.clear()

    def _close(self) -> None:
        for out in (self._frames_out, self._objects_out):
            if out is not None and out.is_open:
                out.close()

    def _write_frames_with_splits(self, splits: np.ndarray) -> None:
        """frames.parquet: the unsplit chunks, each frame with its split."""
        schema = pa.schema([*FRAMES_SCHEMA, *([STATE_COLUMN] if self._with_state else [])])
        start = 0
        with pq.ParquetWriter(self.staging / "frames.parquet", schema) as out:
            for batch in pq.ParquetFile(self.staging / UNSPLIT).iter_batches(batch_size=CHUNK_FRAMES):
                chunk = pa.Table.from_batches([batch])
                chunk = chunk.append_column("split", pa.array(splits[start : start + len(chunk)], pa.string()))
                out.write_table(chunk.select(schema.names).cast(schema))
                start += len(chunk)
        (self.staging / UNSPLIT).unlink()

    def finish(self, catalogue: list[dict]) -> Dataset:
        """Write everything and move it into place; `catalogue` lists the tracks
        ({track_id, name, frames_seen, ...}) in the order later stages should use as object slots."""
        if self.num_frames == 0:
            raise InsightError("no frames were collected, so no dataset was written")
        _check_catalogue(catalogue, "the object catalogue")
        self._flush()
        self._close()
        episodes = np.concatenate(self._episodes)
        splits = assign_splits(episodes)
        self._write_frames_with_splits(splits)
        counts = {
            "frames": self.num_frames,
            "episodes": int(len(np.unique(episodes))),
            "objects": self.num_objects,
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
        check_replaceable(self.path, self.replace)  # again: the run may have taken hours
        _replace_directory(self.staging, self.path)
        return load_dataset(self.path)


def _unsplit_schema() -> pa.Schema:
    return pa.schema([field for field in FRAMES_SCHEMA if field.name != "split"])


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
    """Move `new` to `target`; an existing `target` (a directory, or with --force a file or
    link) is removed only after `new` is in place."""
    old = None
    if target.exists() or target.is_symlink():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        target.rename(old)
    new.rename(target)
    if old is not None:
        _remove(old)


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
    _check_meta(meta, path / "dataset.json")
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
        if name == "frames" and STATE_COLUMN.name in table.column_names:
            schema = schema.append(STATE_COLUMN)
        try:
            tables[name] = table.select(schema.names).cast(schema)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as error:
            raise InsightError(f"{file} has a column of the wrong type: {error}", hint=hint) from None
    if tables["frames"].num_rows != meta["counts"]["frames"]:
        raise InsightError(f"{path} is inconsistent: dataset.json and frames.parquet disagree on the frame count")
    _check_widths(tables["frames"], path / "frames.parquet")
    return Dataset(path, meta, tables["frames"], tables["objects"])


def _check_meta(meta: dict, file: Path) -> None:
    """Every field of dataset.json the stages read, with its type: one line naming the first
    that is wrong."""
    hint = "re-create the dataset with `insight segment`"
    version = meta.get("schema_version")
    if type(version) is not int:
        raise InsightError(f"{file} has schema_version {version!r}, not a whole number", hint=hint)
    if version != SCHEMA_VERSION:
        raise InsightError(
            f"{file.parent} has dataset schema version {version}, this insight reads {SCHEMA_VERSION}",
            hint="re-create it with this version's `insight segment`",
        )
    for key, kind, what in (
        ("game", str, "a game name"),
        ("fingerprint", str, "a string"),
        ("counts", dict, "a table of counts"),
        ("objects", list, "a list of objects"),
    ):
        if not isinstance(meta.get(key), kind):
            problem = f"lacks {key!r} ({what})" if key not in meta else f"{key!r} is not {what}"
            raise InsightError(f"{file} {problem}", hint=hint)
    for key in COUNTS:
        if type(meta["counts"].get(key)) is not int:
            raise InsightError(f"{file}: counts lacks a whole number {key!r}", hint=hint)
    _check_catalogue(meta["objects"], str(file), hint)


def _check_catalogue(catalogue: list, where: str, hint: str | None = None) -> None:
    """Each track: an integer track_id, a frames_seen count and a unique ASCII identifier as name."""
    names = set()
    for entry in catalogue:
        counted = isinstance(entry, dict) and all(type(entry.get(key)) is int for key in ("track_id", "frames_seen"))
        if not counted:
            raise InsightError(f"{where}: object {entry!r} lacks a whole number track_id or frames_seen", hint=hint)
        name = entry.get("name")
        if not is_object_name(name):
            raise InsightError(
                f"{where}: object name {name!r} is not an ASCII identifier",
                hint=hint or 'rename it with --names names.toml, e.g. obj7 = "bullet"',
            )
        if name in names:
            raise InsightError(f"{where}: two objects are named {name!r}", hint=hint or "rename one with --names")
        names.add(name)


def _check_widths(frames: pa.Table, file: Path) -> None:
    """Every gray frame is 84*84 bytes and every ego state has as many values as the first:
    the readers decode them as one array."""
    hint = "re-create the dataset with `insight segment`"
    lengths = pc.binary_length(frames.column("gray"))
    if frames.num_rows and pc.min_max(lengths).as_py() != {"min": FRAME_SIZE**2, "max": FRAME_SIZE**2}:
        raise InsightError(f"{file}: a gray frame is not {FRAME_SIZE}x{FRAME_SIZE} = {FRAME_SIZE**2} bytes", hint=hint)
    if STATE_COLUMN.name in frames.column_names and frames.num_rows:
        extent = pc.min_max(pc.list_value_length(frames.column(STATE_COLUMN.name))).as_py()
        if extent["min"] != extent["max"]:
            raise InsightError(f"{file}: the ego states have different lengths", hint=hint)
