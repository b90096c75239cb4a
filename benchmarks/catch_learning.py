"""Does `insight train` learn Catch on a CPU, and how reliably? Neural guidance on a frozen
pretrained perception CNN (the settings of tests/train/test_learning.py); prints per seed the
EQL actor's evaluation returns during training, and both actors' greedy mean return over 16
episodes at the end (optimum +20, random play about -14).

    .venv/bin/python benchmarks/catch_learning.py [--seeds 0 1 2 3] [--steps 60000] [--threads 1] [--reg-weight 1e-4]

Seeds run one after another; start several processes to use more cores.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from insight_cli.evaluate.episodes import agent_actor, play_episodes
from insight_cli.games import get_game
from insight_cli.pretrain.stage import PretrainConfig
from insight_cli.pretrain.stage import run as pretrain
from insight_cli.segment.stage import SegmentConfig
from insight_cli.segment.stage import run as segment
from insight_cli.train.agent import load_agent
from insight_cli.train.stage import TrainConfig
from insight_cli.train.stage import run as train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    parser.add_argument("--steps", type=int, default=60_000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reg-weight", type=float, default=1e-4)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="catch-learning-"))
    segment(SegmentConfig(game="Catch", frames=400, seed=1, out=root / "dataset"))
    pretrain(
        PretrainConfig(
            game="Catch",
            dataset=root / "dataset",
            out=root / "perception.ckpt",
            epochs=30,
            hidden=256,
            batch_size=16,
            device="cpu",
        )
    )
    for seed in args.seeds:
        start = time.perf_counter()
        result = train(
            TrainConfig(
                game="Catch",
                load_cnn=True,
                freeze_cnn=True,
                perception=root / "perception.ckpt",
                dataset=root / "dataset",
                runs_dir=root / "runs",
                run_name=f"seed{seed}",
                num_steps=32,
                lr=1e-3,
                reg_weight=args.reg_weight,
                total_steps=args.steps,
                eval_episodes=8,
                eval_every=0.1,
                device="cpu",
                seed=seed,
            )
        )
        rows = pq.read_table(root / "runs" / f"seed{seed}" / "metrics.parquet").to_pylist()
        evaluations = [row["eval/eql_return"] for row in rows if row.get("eval/eql_return") is not None]
        agent, _ = load_agent(result.checkpoint, torch.device("cpu"))
        final = {
            actor: float(
                np.mean(
                    play_episodes(
                        agent_actor(agent, actor), get_game("Catch"), 16, seed=7, device=torch.device("cpu")
                    ).returns
                )
            )
            for actor in ("neural", "eql")
        }
        print(
            json.dumps(
                {
                    "seed": seed,
                    "minutes": round((time.perf_counter() - start) / 60, 1),
                    "eql_eval_returns": [round(value, 1) for value in evaluations],
                    "final_greedy": final,
                }
            )
        )


if __name__ == "__main__":
    main()
