"""`insight train` learns: on Catch, within a few minutes on a CPU, the neural actor and the EQL
actor distilled from it go from random play (about -14) to near the optimum (+20)."""

import numpy as np
import pyarrow.parquet as pq
import pytest
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

NEAR_OPTIMUM = 10.0  # of +20; random play scores about -14


@pytest.mark.slow
def test_neural_and_eql_actors_learn_catch(tmp_path):
    segment(SegmentConfig(game="Catch", frames=400, seed=1, out=tmp_path / "dataset"))
    pretrain(
        PretrainConfig(
            game="Catch",
            dataset=tmp_path / "dataset",
            out=tmp_path / "perception.ckpt",
            epochs=30,
            hidden=256,
            batch_size=16,
            device="cpu",
        )
    )
    result = train(
        TrainConfig(
            game="Catch",
            load_cnn=True,
            freeze_cnn=True,
            perception=tmp_path / "perception.ckpt",
            dataset=tmp_path / "dataset",
            runs_dir=tmp_path / "runs",
            run_name="learn",
            num_steps=32,
            lr=1e-3,
            reg_weight=1e-4,
            total_steps=60_000,
            eval_episodes=0,
            eval_every=0.5,
            device="cpu",
            seed=1,
        )
    )
    rows = pq.read_table(tmp_path / "runs" / "learn" / "metrics.parquet").to_pylist()
    returns = [row["train/episode_return"] for row in rows if row.get("train/episode_return") is not None]
    assert returns[0] < -5  # it starts from random play

    agent, _ = load_agent(result.checkpoint, torch.device("cpu"))
    for actor in ("neural", "eql"):
        act = agent_actor(agent, actor)
        scores = play_episodes(act, get_game("Catch"), 16, seed=7, device=torch.device("cpu")).returns
        assert np.mean(scores) >= NEAR_OPTIMUM, (actor, scores)
