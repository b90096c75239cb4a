import json
import os
import subprocess
import sys

import pytest
import torch
from typer.testing import CliRunner

from insight_cli.checkpoint import load_checkpoint, save_checkpoint
from insight_cli.cli import app
from insight_cli.errors import InsightError, UsageError
from insight_cli.pretrain.stage import PretrainConfig
from insight_cli.pretrain.stage import run as pretrain
from insight_cli.segment.stage import SegmentConfig
from insight_cli.segment.stage import run as segment
from insight_cli.train import stage
from insight_cli.train.stage import TrainConfig, run

runner = CliRunner()


@pytest.fixture(scope="module")
def catch(tmp_path_factory):
    """A small Catch dataset and a quickly pretrained narrow perception CNN."""
    root = tmp_path_factory.mktemp("catch")
    segment(SegmentConfig(game="Catch", frames=200, out=root / "dataset"))
    pretrain(PretrainConfig(game="Catch", dataset=root / "dataset", out=root / "perception.ckpt", epochs=1, hidden=32))
    return root


def tiny(catch, tmp_path, **overrides):
    settings = dict(
        game="Catch", load_cnn=True, perception=catch / "perception.ckpt", dataset=catch / "dataset",
        runs_dir=tmp_path / "runs", run_name="tiny", total_steps=3 * 4 * 16, num_envs=4, num_steps=16,
        eval_episodes=1, eval_every=0.5, device="cpu", seed=1,
    )
    return TrainConfig(**{**settings, **overrides})


def test_run_writes_checkpoint_metrics_and_curve(catch, tmp_path):
    result = run(tiny(catch, tmp_path))
    run_dir = tmp_path / "runs" / "tiny"
    checkpoint = load_checkpoint(result.checkpoint, kind="run")
    assert checkpoint.meta["game"] == "Catch" and checkpoint.meta["global_step"] == 3 * 64
    assert [o["name"] for o in checkpoint.meta["objects"]] == ["ball", "paddle"]
    assert "eval/eql_return" in result.last_eval and result.steps_per_second > 0
    for name in ("metrics.parquet", "metrics.csv", "learning_curve.png", "result.json"):
        assert (run_dir / name).stat().st_size > 0
    assert any((run_dir / "tensorboard").iterdir())


def test_interrupted_run_resumes_to_the_same_weights(catch, tmp_path, monkeypatch):
    straight = run(tiny(catch, tmp_path / "a"))
    real_update = stage.ppo_update

    def update_then_interrupt(*args, **kwargs):  # Ctrl-C arrives during the first update
        stats = real_update(*args, **kwargs)
        stage._Stop.requested = True
        return stats

    monkeypatch.setattr(stage, "ppo_update", update_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(tiny(catch, tmp_path / "b"))
    interrupted = load_checkpoint(tmp_path / "b" / "runs" / "tiny" / "run.ckpt", kind="run")
    assert interrupted.meta["update"] == 1
    assert set(interrupted.state) == {"agent"}  # the optimizer etc. live in run.resume.ckpt
    assert load_checkpoint(tmp_path / "b" / "runs" / "tiny" / "run.resume.ckpt", kind="run-resume").state["update"] == 1
    monkeypatch.setattr(stage, "ppo_update", real_update)
    resumed = run(tiny(catch, tmp_path / "b", resume=True))
    assert resumed.global_step == straight.global_step
    weights_a = load_checkpoint(straight.checkpoint).state["agent"]
    weights_b = load_checkpoint(resumed.checkpoint).state["agent"]
    for name, tensor in weights_a.items():
        assert torch.equal(tensor, weights_b[name]), name


def test_resume_refuses_other_settings_and_a_foreign_resume_file(catch, tmp_path):
    run(tiny(catch, tmp_path, total_steps=64))
    with pytest.raises(InsightError, match="other settings.*lr"):
        run(tiny(catch, tmp_path, total_steps=64, lr=1e-3, resume=True))
    resume_file = tmp_path / "runs" / "tiny" / "run.resume.ckpt"
    saved = load_checkpoint(resume_file)
    save_checkpoint(resume_file, "run-resume", saved.config, saved.meta, {**saved.state, "update": 99})
    with pytest.raises(InsightError, match="does not belong to"):
        run(tiny(catch, tmp_path, total_steps=64, resume=True))


def test_bad_inputs(catch, tmp_path):
    with pytest.raises(InsightError, match="no checkpoint"):
        run(tiny(catch, tmp_path, perception=tmp_path / "missing.ckpt"))
    with pytest.raises(InsightError, match="dataset run checkpoint|is a run checkpoint|expected a perception"):
        run(tiny(catch, tmp_path, perception=run(tiny(catch, tmp_path / "r")).checkpoint))
    with pytest.raises(InsightError, match="Catch dataset, not Pong"):
        run(tiny(catch, tmp_path, game="Pong"))
    other = tmp_path / "other"
    segment(SegmentConfig(game="Catch", frames=120, seed=9, out=other))
    with pytest.raises(InsightError, match="another dataset"):
        run(tiny(catch, tmp_path, dataset=other))
    for bad in (dict(num_envs=0), dict(lr=0.0), dict(threshold=1.5), dict(reg_weight=-1.0), dict(num_steps=3, num_envs=1),
                dict(freeze_cnn=True, load_cnn=False)):
        with pytest.raises(UsageError):
            run(tiny(catch, tmp_path, **bad))


def test_cli_prints_the_checkpoint_path(catch, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        ["train", "--game", "Catch", "--load-cnn", "--perception", str(catch / "perception.ckpt"), "--dataset",
         str(catch / "dataset"), "--total-steps", "64", "--num-envs", "4", "--num-steps", "16", "--eval-episodes", "1",
         "--eval-every", "1.0", "--run-name", "cli", "--device", "cpu"],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "data/Catch/runs/cli/run.ckpt"
    assert load_checkpoint(tmp_path / "data/Catch/runs/cli/run.ckpt").config["eval_every"] == 1.0
    missing = runner.invoke(app, ["train", "--game", "Catch", "--load-cnn", "--dataset", str(catch / "dataset")])
    assert missing.exit_code == 1 and "no checkpoint" in missing.output


@pytest.mark.slow
def test_two_cpu_ranks_stay_in_sync_and_only_rank_zero_writes(catch, tmp_path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
        "-m", "insight_cli", "train", "--game", "Catch", "--load-cnn", "--perception", str(catch / "perception.ckpt"),
        "--dataset", str(catch / "dataset"), "--total-steps", "256", "--num-envs", "4", "--num-steps", "16",
        "--eval-episodes", "1", "--run-name", "ddp", "--device", "cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "data" / "Catch" / "runs" / "ddp" / "result.json").read_text())
    assert result["world_size"] == 2 and result["ranks_in_sync"] is True
    assert result["global_step"] == 256  # 2 ranks x 4 envs x 16 steps x 2 updates
    assert [p.name for p in (tmp_path / "data" / "Catch" / "runs").iterdir()] == ["ddp"]


def test_frozen_cnn_keeps_the_pretrained_weights(catch, tmp_path):
    result = run(tiny(catch, tmp_path, freeze_cnn=True))
    pretrained = load_checkpoint(catch / "perception.ckpt").state["model"]
    trained = load_checkpoint(result.checkpoint).state["agent"]
    for name, tensor in pretrained.items():
        assert torch.equal(trained[f"perception.{name}"], tensor), name


def test_segment_with_a_trained_policy(catch, tmp_path):
    from insight_cli.dataset import load_dataset

    checkpoint = run(tiny(catch, tmp_path)).checkpoint
    result = segment(SegmentConfig(game="Catch", frames=50, policy=checkpoint, out=tmp_path / "played", device="cpu"))
    dataset = load_dataset(result.dataset)
    assert dataset.meta["source"] == f"policy {checkpoint}" and result.frames == 50
    assert set(dataset.frames.column("action").to_pylist()) <= {0, 1, 2}
    with pytest.raises(InsightError, match="plays Catch, not Pong"):
        segment(SegmentConfig(game="Pong", frames=5, policy=checkpoint, out=tmp_path / "pong"))
    with pytest.raises(UsageError, match="exclude each other"):
        segment(SegmentConfig(game="Catch", frames=5, policy=checkpoint, input=tmp_path, out=tmp_path / "x"))
    with pytest.raises(InsightError, match="expected a run"):
        segment(SegmentConfig(game="Catch", frames=5, policy=catch / "perception.ckpt", out=tmp_path / "y"))
