"""Where segment gets its frames: a game played by a seeded random policy, or a recording
(a video file or a folder of PNG frames) made elsewhere."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from insight_cli.envs import make_frame_source
from insight_cli.envs.preprocessing import gray_view
from insight_cli.errors import InsightError
from insight_cli.games import GameSpec

VIDEO_SUFFIXES = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".gif"}


class SourceFrame(NamedTuple):
    episode: int
    step: int
    rgb: np.ndarray  # (H, W, 3) uint8
    gray: np.ndarray  # (84, 84) uint8, newest frame of the training view
    action: int  # action taken on this frame, -1 when unknown (or continuous)
    reward: float  # reward received on reaching this frame
    objects: list | None = None  # the simulator's own object boxes, where it reports them (MetaDrive)
    state: np.ndarray | None = None  # the ego state on this frame, for games with one (MetaDrive)


Policy = Callable[[np.ndarray, np.ndarray | None], int | np.ndarray]  # training view, ego state -> action


def play(game: GameSpec, frames: int, seed: int, policy: Policy | None = None) -> Iterator[SourceFrame]:
    """`frames` consecutive frames of the game under `policy` (training view (4, 84, 84) and
    ego state or None -> action), or a uniformly random one (MetaDrive: its own IDM expert
    drives); the training view comes from the same preprocessing as `insight train`'s envs."""
    source = make_frame_source(game, seed=seed, mode="train", expert=game.continuous and policy is None)
    rng = np.random.default_rng(seed)
    frame, reward, episode, step = source.reset(), 0.0, 0, 0
    try:
        for _ in range(frames):
            objects, state = getattr(source, "objects", None), getattr(source, "ego_state", None)
            if policy:
                action = policy(frame.stack, state)
            else:
                action = None if game.continuous else int(rng.integers(len(source.action_meanings)))
            recorded = -1 if game.continuous else action
            yield SourceFrame(
                episode,
                step,
                frame.rgb,
                frame.stack[-1],
                recorded,
                reward,
                objects,
                None if state is None else state.copy(),
            )
            frame, reward, done = source.step(action)
            episode, step = (episode + 1, 0) if done else (episode, step + 1)
            if done:
                reward = 0.0  # the reward belonged to the episode that just ended
    finally:
        source.close()


def read_recording(path: Path, frames: int) -> Iterator[SourceFrame]:
    """Up to `frames` frames of a video file or a folder of PNGs (sorted by name), as one episode."""
    images = _png_frames(path) if path.is_dir() else _video_frames(path)
    for step, rgb in enumerate(images):
        if step >= frames:
            break
        yield SourceFrame(0, step, rgb, gray_view(rgb), -1, 0.0)


def check_recording(path: Path) -> None:
    """Fail early, with one line, on a recording that cannot be read."""
    if not path.exists():
        raise InsightError(f"--input {path} does not exist")
    if path.is_dir():
        if not any(path.glob("*.png")):
            raise InsightError(f"--input folder {path} has no .png frames")
    elif path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InsightError(
            f"--input {path} is neither a folder of PNG frames nor a video",
            hint=f"videos: {', '.join(sorted(VIDEO_SUFFIXES))}",
        )
    else:
        if next(iter(read_recording(path, 1)), None) is None:
            raise InsightError(f"--input video {path} has no frames")


def _png_frames(folder: Path) -> Iterator[np.ndarray]:
    """The folder's frames in name order; all must have the size of the first (a recording)."""
    first = None
    for file in sorted(folder.glob("*.png")):
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        if image is None:
            raise InsightError(f"cannot read {file} as an image")
        first = first or (file, image.shape)
        if image.shape != first[1]:
            raise InsightError(
                f"--input frames differ in size: {file.name} is {_size(image.shape)}, {first[0].name} is "
                f"{_size(first[1])}",
                hint="give frames of one recording, all one size",
            )
        yield cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _video_frames(path: Path) -> Iterator[np.ndarray]:
    import imageio.v3 as iio

    try:
        for image in iio.imiter(path):
            yield np.ascontiguousarray(image[..., :3])
    except (OSError, RuntimeError, ValueError) as error:
        raise InsightError(f"cannot read video {path}: {str(error).splitlines()[0]}") from None


__all__ = ["SourceFrame", "check_recording", "play", "read_recording"]
