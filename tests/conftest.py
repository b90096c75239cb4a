import os

import numpy as np
import pytest
import torch

if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n 2 runs two workers on two cores: more threads each would only fight.
    torch.set_num_threads(1)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def _distil_move_toward_the_ball(checkpoint_path, dataset_path):
    """Refit a run's EQL actor to the known-optimal Catch policy (move toward the ball) on the
    dataset's labelled coordinates, with a strong sparsity penalty, and save the run again.
    Learning by RL is the train stage's business; this gives the later stages an actor whose
    right answer is known."""
    from insight_cli.checkpoint import save_checkpoint
    from insight_cli.dataset import load_dataset
    from insight_cli.perception.data import decode
    from insight_cli.train.agent import load_agent
    from insight_cli.train.eql import eql_penalty

    agent, checkpoint = load_agent(checkpoint_path, torch.device("cpu"))
    slots = [{"track_id": o["track_id"], "name": o["name"]} for o in checkpoint.meta["objects"]]
    data = decode(load_dataset(dataset_path), slots, torch.device("cpu"))
    names = [slot["name"] for slot in slots]
    ball, paddle = names.index("ball"), names.index("paddle")
    both = data.exists[:, ball, 3] & data.exists[:, paddle, 3]
    coordinates = data.coordinates[both]
    gap = coordinates[:, ball, 3, 0] - coordinates[:, paddle, 3, 0]
    actions = checkpoint.meta["action_meanings"]
    labels = torch.where(
        gap > 0.02, actions.index("RIGHT"), torch.where(gap < -0.02, actions.index("LEFT"), actions.index("NOOP"))
    )
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(agent.eql.parameters(), lr=1e-2)
    for step in range(3000):
        loss = torch.nn.functional.cross_entropy(agent.eql(coordinates), labels)
        loss = loss + 3e-2 * min(1.0, step / 1000) * eql_penalty(agent.eql)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    state = dict(checkpoint.state, agent=agent.state_dict())
    save_checkpoint(checkpoint_path, "run", checkpoint.config, checkpoint.meta, state)


@pytest.fixture(scope="session")
def catch_run(tmp_path_factory):
    """A Catch dataset, a small perception CNN, a tiny train run whose EQL actor is then refit
    to move toward the ball: the run.ckpt path."""
    from insight_cli.pretrain.stage import PretrainConfig
    from insight_cli.pretrain.stage import run as pretrain
    from insight_cli.segment.stage import SegmentConfig
    from insight_cli.segment.stage import run as segment
    from insight_cli.train.stage import TrainConfig
    from insight_cli.train.stage import run as train

    root = tmp_path_factory.mktemp("catch_run")
    segment(SegmentConfig(game="Catch", frames=300, out=root / "dataset"))
    pretrain(PretrainConfig(game="Catch", dataset=root / "dataset", out=root / "perception.ckpt", epochs=4, hidden=64))
    result = train(
        TrainConfig(
            game="Catch",
            load_cnn=True,
            perception=root / "perception.ckpt",
            dataset=root / "dataset",
            runs_dir=root / "runs",
            run_name="run",
            total_steps=64,
            num_envs=4,
            num_steps=16,
            eval_episodes=0,
            device="cpu",
        )
    )
    _distil_move_toward_the_ball(result.checkpoint, root / "dataset")
    return result.checkpoint
