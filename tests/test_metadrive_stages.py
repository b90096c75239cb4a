"""MetaDrive for real, offline (top-down view), through segment -> pretrain -> train ->
extract-policy -> evaluate -> explain on tiny budgets."""

import json

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from insight_cli.checkpoint import load_checkpoint
from insight_cli.dataset import load_dataset
from insight_cli.envs.metadrive import STATE_SIZE, asset_status
from insight_cli.errors import UsageError
from insight_cli.evaluate.stage import EvaluateConfig
from insight_cli.evaluate.stage import run as evaluate
from insight_cli.explain.stage import ExplainConfig
from insight_cli.explain.stage import run as explain
from insight_cli.extract_policy.stage import ExtractConfig, held_out_states
from insight_cli.extract_policy.stage import run as extract
from insight_cli.pretrain.stage import PretrainConfig
from insight_cli.pretrain.stage import run as pretrain
from insight_cli.segment.stage import SegmentConfig
from insight_cli.segment.stage import run as segment
from insight_cli.train.agent import load_agent
from insight_cli.train.stage import TrainConfig
from insight_cli.train.stage import run as train

pytestmark = pytest.mark.skipif(asset_status() == "not-installed", reason="metadrive-simulator is not installed")


def test_metadrive_through_the_stages(tmp_path):
    result = segment(SegmentConfig(game="MetaDrive", frames=240, seed=2, out=tmp_path / "dataset"))
    meta = json.loads((tmp_path / "dataset" / "dataset.json").read_text())
    assert meta["backend"] == "simulator" and meta["counts"]["frames"] == 240
    states = load_dataset(tmp_path / "dataset").states()  # the ego state of every frame, for held-out fidelity
    assert states.shape == (240, STATE_SIZE) and ((states >= 0) & (states <= 1)).all() and states.std(axis=0).max() > 0
    names = [track["name"] for track in result.tracks]
    assert names[:3] == ["ego", "road_left", "road_right"] and result.tracks[0]["seen_fraction"] == 1.0
    assert names[3:] and all(name == f"vehicle{rank}" for rank, name in enumerate(names[3:], start=1))  # nearest first
    objects = pq.read_table(tmp_path / "dataset" / "objects.parquet").to_pylist()
    x_of = {name: [o["cx"] for o in objects if o["name"] == name] for name in ("road_left", "road_right")}
    assert all(abs(o["cx"] - 0.5) < 0.02 and abs(o["cy"] - 0.5) < 0.02 for o in objects if o["name"] == "ego")
    # the ego drives between the edges of its side of the road
    assert np.mean(np.array(x_of["road_left"]) < 0.5) > 0.9 and np.mean(np.array(x_of["road_right"]) > 0.5) > 0.9

    checkpoint = tmp_path / "perception.ckpt"
    trained = pretrain(
        PretrainConfig(
            game="MetaDrive", dataset=tmp_path / "dataset", out=checkpoint, epochs=2, hidden=32, device="cpu"
        )
    )
    assert trained.checkpoint == checkpoint and checkpoint.exists()

    run = train(
        TrainConfig(
            game="MetaDrive",
            load_cnn=True,
            perception=checkpoint,
            dataset=tmp_path / "dataset",
            runs_dir=tmp_path / "runs",
            run_name="drive",
            total_steps=64,
            num_envs=2,
            num_steps=16,
            num_minibatches=2,
            lr=5e-5,
            clip_coef=0.2,
            kl_coef=0.2,
            reg_weight=1e-4,
            ng=False,
            eval_episodes=0,
            device="cpu",
        )
    )
    assert run.global_step == 64
    agent, _ = load_agent(run.checkpoint, torch.device("cpu"))
    assert agent.config.continuous and agent.config.state_size == STATE_SIZE
    assert not torch.equal(agent.eql_log_std, torch.full((2,), -0.5))  # the EQL actor acted and was trained

    driven = segment(
        SegmentConfig(game="MetaDrive", frames=20, seed=3, policy=run.checkpoint, out=tmp_path / "driven", device="cpu")
    )
    assert driven.frames == 20 and load_dataset(tmp_path / "driven").states().shape == (20, STATE_SIZE)

    blind = train(
        TrainConfig(
            game="MetaDrive",
            load_cnn=True,
            perception=checkpoint,
            dataset=tmp_path / "dataset",
            runs_dir=tmp_path / "runs",
            run_name="pixels-only",
            total_steps=32,
            num_envs=2,
            num_steps=16,
            num_minibatches=2,
            ego_state=False,
            eval_episodes=0,
            device="cpu",
        )
    )
    assert load_agent(blind.checkpoint, torch.device("cpu"))[0].config.state_size == 0

    for actor in ("neural", "eql"):
        result = evaluate(EvaluateConfig(checkpoint=run.checkpoint, actor=actor, episodes=1, device="cpu"))
        assert result.summary["episodes"] == 1 and result.summary["success_rate"] in (0.0, 1.0)

    extracted = extract(ExtractConfig(checkpoint=run.checkpoint, max_terms=6, episodes=1, device="cpu"))
    policy = extracted.policy
    assert policy.continuous and policy.actions == ["steering", "throttle"] and max(policy.term_counts) <= 6
    assert [v.name for v in policy.variables[-STATE_SIZE:]][:2] == ["ego_left_gap", "ego_right_gap"]
    fidelity = extracted.fidelity
    assert fidelity["held_out_states"] == 48 and 0.0 <= fidelity["held_out_fidelity"] <= 1.0
    assert fidelity["rollout_states"] > 0 and fidelity["rollout_action_error"] >= 0.0
    document = json.loads((run.checkpoint.parent / "policy.json").read_text())
    assert document["continuous"] and len(document["state"]) == STATE_SIZE

    # The policy's inputs are the EQL actor's, in its order: coordinates, then the ego state.
    inputs, actions = held_out_states(agent, load_checkpoint(run.checkpoint), tmp_path / "dataset", torch.device("cpu"))
    with torch.no_grad():
        np.testing.assert_allclose(np.tanh(agent.eql(torch.from_numpy(inputs).float()).numpy()), actions, atol=1e-5)
    driven = evaluate(EvaluateConfig(checkpoint=run.checkpoint, actor="symbolic", episodes=1, device="cpu")).summary
    assert driven["episodes"] == 1 and "success_rate" in driven

    explained = explain(ExplainConfig(checkpoint=run.checkpoint, decisions=2, device="cpu"))
    decisions = explained.document["decisions"]
    assert len(decisions) == 2 and set(decisions[0]["actions"]) == {"steering", "throttle"}
    assert (
        explained.faithfulness["claims"] > 0 and explained.faithfulness["claims"] == explained.faithfulness["supported"]
    )
    assert "mean_steering" in (run.checkpoint.parent / "explanation.md").read_text()


def test_simulator_backend_needs_a_simulator(tmp_path):
    with pytest.raises(UsageError, match="simulator"):
        segment(SegmentConfig(game="Catch", backend="simulator", out=tmp_path / "dataset"))
    assert not (tmp_path / "dataset").exists()
