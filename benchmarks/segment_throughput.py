"""End-to-end `insight segment` throughput with the classic backend on one core:
play + segment + track + PNG-encode + write, preview included.

    .venv/bin/python benchmarks/segment_throughput.py [--game Pong] [--frames 3000] [--repeats 3]

Pins itself to one CPU core; prints the median frames/s over repeats (target >= 300) and the
classic segmenter's own cost per frame.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from insight_cli.games import get_game
from insight_cli.segment.classic import ClassicSegmenter
from insight_cli.segment.sources import play
from insight_cli.segment.stage import SegmentConfig, run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    rates = []
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            result = run(SegmentConfig(game=args.game, frames=args.frames, seed=repeat, out=Path(tmp) / "ds"))
            rates.append(result.frames_per_second)
    frames = np.stack([frame.rgb for frame in play(get_game(args.game), 1000, seed=0)])
    segmenter = ClassicSegmenter(get_game(args.game)).fit(frames[:256])
    start = time.perf_counter()
    for frame in frames:
        segmenter(frame)
    per_frame_ms = (time.perf_counter() - start) / len(frames) * 1000
    print(f"{args.game}, {args.frames} frames x {args.repeats} repeats, one core")
    print(f"  end to end (play+segment+track+write): {statistics.median(rates):7.0f} frames/s (median)")
    print(f"  classic segmenter alone:               {per_frame_ms:7.2f} ms/frame")


if __name__ == "__main__":
    main()
