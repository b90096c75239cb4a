"""`insight segment`: game frames -> the frame-symbol dataset (docs/design.md §6)."""

from __future__ import annotations

import itertools
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from insight_cli import paths
from insight_cli.dataset import DatasetWriter, check_replaceable
from insight_cli.errors import UsageError
from insight_cli.games import GameSpec, get_game
from insight_cli.pictures import annotate, write_contact_sheet, write_video
from insight_cli.progress import progress_bar
from insight_cli.runtime import Device, resolve_device
from insight_cli.segment.config import SegmentConfig
from insight_cli.segment.naming import load_name_overrides
from insight_cli.segment.simulator import SimulatorObjects
from insight_cli.segment.sources import check_recording, play, read_recording
from insight_cli.segment.tracking import Tracker

PREVIEW_VIDEO_FRAMES = 300
CONTACT_SHEET_FRAMES = 16
# Frames are flat-coloured: fast zlib without PNG row filters is 4x quicker and as small.
PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_NONE]


@dataclass
class SegmentResult:
    dataset: Path
    frames: int
    episodes: int
    train_frames: int
    test_frames: int
    tracks: list[dict]
    seconds: float
    preview: list[Path]

    @property
    def frames_per_second(self) -> float:
        return self.frames / max(self.seconds, 1e-9)


def default_dataset_path(game: str) -> Path:
    return paths.dataset_dir(get_game(game).name)


def make_segmenter(config: SegmentConfig, game: GameSpec, sample_frames: np.ndarray):
    """The backend as a callable (H, W, 3) uint8 -> Detections."""
    if config.backend == "classic":
        from insight_cli.segment.classic import ClassicSegmenter

        return ClassicSegmenter(game).fit(sample_frames)
    from insight_cli.segment import foundation

    device = resolve_device(config.device)
    if config.backend == "fastsam":
        return foundation.FastSamSegmenter(config.checkpoint, device)
    return foundation.SamSegmenter(config.checkpoint, device)


def _agent_policy(config: SegmentConfig, game: GameSpec):
    """A trained agent's neural actor, sampling its actions with a seeded generator: a choice,
    or (continuous games) tanh of a Gaussian sample, from the training view and the ego state."""
    import torch

    from insight_cli.train.agent import load_agent

    device = resolve_device(config.device)
    agent, _ = load_agent(config.policy, device, game.name)
    generator = torch.Generator(device=device).manual_seed(config.seed)

    @torch.no_grad()
    def act(stack: np.ndarray, state: np.ndarray | None):
        ego = torch.from_numpy(state[None]).to(device) if agent.config.state_size else None
        scores = agent(torch.from_numpy(stack[None]).to(device), ego).neural_logits.float()
        if agent.config.continuous:
            noise = torch.randn(scores.shape, generator=generator, device=device)
            return torch.tanh(scores + agent.neural_log_std.exp() * noise)[0].cpu().numpy()
        return int(torch.multinomial(torch.softmax(scores, dim=-1), 1, generator=generator))

    return act


def run(config: SegmentConfig) -> SegmentResult:
    config.validate()
    game = get_game(config.game)
    backend = config.backend if config.backend != "auto" else "simulator" if game.continuous else "classic"
    config = replace(config, backend=backend)
    if backend == "simulator" and not game.continuous:
        raise UsageError(
            f"--backend simulator needs a simulator that reports its objects; {game.name} does not",
            hint="use classic, fastsam or sam",
        )
    if backend == "simulator" and config.input is not None:
        raise UsageError(
            "a recording has no simulator objects", hint="use --backend classic, fastsam or sam with --input"
        )
    if Device(config.device) is Device.cuda:
        resolve_device(config.device)  # refuse a missing GPU before any work, as every verb does
    overrides = load_name_overrides(config.names, game)
    out = Path(config.out) if config.out else default_dataset_path(game.name)
    check_replaceable(out, config.force)
    if config.input is not None and config.policy is not None:
        raise UsageError("--input and --policy exclude each other: a recording has no one to play")
    if config.input is not None:
        check_recording(Path(config.input))
        frames = read_recording(Path(config.input), config.frames)
        source = str(config.input)
    elif config.policy is not None:
        frames = play(game, config.frames, config.seed, _agent_policy(config, game))
        source = f"policy {config.policy}"
    else:
        frames = play(game, config.frames, config.seed)
        source = "random policy"
    # The classic backend's background model is fitted on the first frames, which are then
    # segmented like the rest.
    head = list(itertools.islice(frames, min(config.background_frames, config.frames)))
    if backend == "simulator":
        simulator = SimulatorObjects(overrides)
        catalogue = simulator.catalogue

        def label(frame):
            return simulator.label(frame.objects)
    else:
        segmenter = make_segmenter(config, game, np.stack([frame.rgb for frame in head]) if head else None)
        tracker = Tracker(game, overrides=overrides)
        catalogue = tracker.catalogue

        def label(frame):
            detections = segmenter(frame.rgb)
            return (detections, *tracker.update(detections, frame.rgb.shape))

    meta = {
        "game": game.name,
        "backend": backend,
        "seed": config.seed,
        "source": source,
        "frame_shape": list(head[0].rgb.shape) if head else None,
        "action_meanings": game.action_names,
        "config": asdict(config),
    }
    contact_every = max(1, config.frames // CONTACT_SHEET_FRAMES)
    video, sheet = [], []
    start = time.perf_counter()
    with DatasetWriter(out, meta, replace=config.force) as writer, progress_bar("frames") as progress:
        task = progress.add_task(f"segment {game.name}", total=config.frames)
        for frame in itertools.chain(head, frames):
            detections, track_ids, names = label(frame)
            png = cv2.imencode(".png", cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR), PNG_FAST)[1].tobytes()
            frame_id = writer.add_frame(
                frame.episode, frame.step, png, frame.gray, frame.action, frame.reward, frame.state
            )
            writer.add_objects(
                frame_id, track_ids, names, detections.boxes, detections.areas, detections.colors, frame.rgb.shape
            )
            if frame_id < PREVIEW_VIDEO_FRAMES or frame_id % contact_every == 0:
                annotated = annotate(frame.rgb, detections.boxes, track_ids, names)
                if frame_id < PREVIEW_VIDEO_FRAMES:
                    video.append(annotated)
                if frame_id % contact_every == 0 and len(sheet) < CONTACT_SHEET_FRAMES:
                    sheet.append(annotated)
            progress.advance(task)
        seconds = time.perf_counter() - start
        writer.meta["run"] = {"seconds": round(seconds, 3), "frames_per_second": round(writer.num_frames / seconds, 1)}
        if video:
            write_video(writer.staging / "preview.mp4", video)
            write_contact_sheet(writer.staging / "preview.png", sheet)
        dataset = writer.finish(catalogue(writer.num_frames))
    counts = dataset.meta["counts"]
    return SegmentResult(
        dataset=out,
        frames=counts["frames"],
        episodes=counts["episodes"],
        train_frames=counts["train_frames"],
        test_frames=counts["test_frames"],
        tracks=dataset.meta["objects"],
        seconds=seconds,
        preview=[out / "preview.mp4", out / "preview.png"],
    )
