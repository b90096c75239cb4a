"""Does `insight train` learn Catch on a CPU? Neural guidance on a frozen pretrained
perception CNN; prints the EQL actor's evaluation returns over training and the neural actor's
mean training return over its last 10 episodes, per seed (optimum +20, random play about -14).

    .venv/bin/python benchmarks/catch_learning.py [--seeds 1 2] [--steps 100000] [--threads 1]

Seeds run one after another; start several processes to use more cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pyarrow.parquet as pq
import torch

from insight_cli.pretrain.stage import PretrainConfig
from insight_cli.pretrain.stage import run as pretrain
from insight_cli.segment.stage import SegmentConfig
from insight_cli.segment.stage import run as segment
from insight_cli.train.stage import TrainConfig
from insight_cli.train.stage import run as train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="catch-learning-"))
    segment(SegmentConfig(game="Catch", frames=400, seed=1, out=root / "dataset"))
    pretrain(PretrainConfig(game="Catch", dataset=root / "dataset", out=root / "perception.ckpt", epochs=30, hidden=256,
                            batch_size=16, device="cpu"))
    for seed in args.seeds:
        start = time.perf_counter()
        train(TrainConfig(game="Catch", load_cnn=True, freeze_cnn=True, perception=root / "perception.ckpt",
                          dataset=root / "dataset", runs_dir=root / "runs", run_name=f"seed{seed}", num_steps=32, lr=1e-3,
                          total_steps=args.steps, eval_episodes=8, eval_every=0.1, device="cpu", seed=seed))
        rows = pq.read_table(root / "runs" / f"seed{seed}" / "metrics.parquet").to_pylist()
        evaluations = [row["eval/eql_return"] for row in rows if row.get("eval/eql_return") is not None]
        training = [row["train/episode_return"] for row in rows if row.get("train/episode_return") is not None]
        print(json.dumps({"seed": seed, "minutes": round((time.perf_counter() - start) / 60, 1),
                          "eql_eval_returns": evaluations, "neural_train_return_last10": sum(training[-10:]) / 10}))


if __name__ == "__main__":
    main()
