import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from insight_cli.checkpoint import load_checkpoint, save_checkpoint
from insight_cli.cli import app
from insight_cli.envs import make_vector_env
from insight_cli.errors import InsightError, UsageError
from insight_cli.perception.model import PerceptionConfig
from insight_cli.pretrain.stage import PretrainConfig
from insight_cli.pretrain.stage import run as pretrain
from insight_cli.segment.stage import SegmentConfig
from insight_cli.segment.stage import run as segment
from insight_cli.train import stage
from insight_cli.train.agent import Agent, AgentConfig
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
        game="Catch",
        load_cnn=True,
        perception=catch / "perception.ckpt",
        dataset=catch / "dataset",
        runs_dir=tmp_path / "runs",
        run_name="tiny",
        total_steps=3 * 4 * 16,
        num_envs=4,
        num_steps=16,
        eval_episodes=1,
        eval_every=0.5,
        device="cpu",
        seed=1,
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
    assert set(interrupted.state) == {"agent"}  # the optimizer etc. live in run.resume.1.ckpt
    assert (
        load_checkpoint(tmp_path / "b" / "runs" / "tiny" / "run.resume.1.ckpt", kind="run-resume").state["update"] == 1
    )
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
    resume_file = tmp_path / "runs" / "tiny" / "run.resume.1.ckpt"
    saved = load_checkpoint(resume_file)
    save_checkpoint(resume_file, "run-resume", saved.config, saved.meta, {**saved.state, "update": 99})
    with pytest.raises(InsightError, match="does not belong to"):
        run(tiny(catch, tmp_path, total_steps=64, resume=True))
    resume_file.unlink()
    with pytest.raises(InsightError, match="resume state .* is missing"):
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
    for bad in (
        dict(num_envs=0),
        dict(lr=0.0),
        dict(threshold=1.5),
        dict(reg_weight=-1.0),
        dict(num_steps=3, num_envs=1),
        dict(freeze_cnn=True, load_cnn=False),
        dict(reg_weight=float("nan")),
        dict(lr=float("inf")),
        dict(num_envs=10_000),
        dict(total_steps=1),
        dict(eval_every=2.0),
        dict(run_name="../../x"),
        dict(run_name="/tmp/x"),
        dict(run_name=".."),
    ):
        with pytest.raises(UsageError):
            run(tiny(catch, tmp_path, **bad))


def test_cli_prints_the_checkpoint_path(catch, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(
        app,
        [
            "train",
            "--game",
            "Catch",
            "--load-cnn",
            "--perception",
            str(catch / "perception.ckpt"),
            "--dataset",
            str(catch / "dataset"),
            "--total-steps",
            "64",
            "--num-envs",
            "4",
            "--num-steps",
            "16",
            "--eval-episodes",
            "1",
            "--eval-every",
            "1.0",
            "--run-name",
            "cli",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "data/Catch/runs/cli/run.ckpt"
    assert load_checkpoint(tmp_path / "data/Catch/runs/cli/run.ckpt").config["eval_every"] == 1.0
    missing = runner.invoke(app, ["train", "--game", "Catch", "--load-cnn", "--dataset", str(catch / "dataset")])
    assert missing.exit_code == 1 and "no checkpoint" in missing.output


@pytest.mark.slow
def test_two_cpu_ranks_stay_in_sync_and_only_rank_zero_writes(catch, tmp_path):
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        "29517",
        "-m",
        "insight_cli",
        *_train_args(
            catch, "--total-steps", "384", "--dagger-share", "0.34", "--eval-episodes", "1", "--run-name", "ddp"
        ),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    completed = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads((tmp_path / "data" / "Catch" / "runs" / "ddp" / "result.json").read_text())
    assert result["world_size"] == 2 and result["ranks_in_sync"] is True
    assert result["global_step"] == 384  # 2 ranks x 4 envs x 16 steps x 3 updates, the last one DAgger
    assert result["dagger_best_update"] == 3  # rank 0 put its best EQL actor back, and the ranks still agree
    assert [p.name for p in (tmp_path / "data" / "Catch" / "runs").iterdir()] == ["ddp"]


def test_a_run_logging_to_a_file_reports_its_progress_and_rate(catch, tmp_path, monkeypatch, capsys):
    from insight_cli import progress

    monkeypatch.setattr(progress, "LOG_EVERY", 0.0)
    run(tiny(catch, tmp_path))
    lines = [line for line in capsys.readouterr().err.splitlines() if " env steps (" in line]
    assert [line.split(": ")[-1].split(" env steps")[0] for line in lines] == ["64/192", "128/192", "192/192"]
    assert all(re.search(r"\), [0-9][0-9,.]* env steps/s", line) for line in lines), lines


def test_frozen_cnn_keeps_the_pretrained_weights(catch, tmp_path):
    result = run(tiny(catch, tmp_path, freeze_cnn=True))
    pretrained = load_checkpoint(catch / "perception.ckpt").state["model"]
    trained = load_checkpoint(result.checkpoint).state["agent"]
    for name, tensor in pretrained.items():
        assert torch.equal(trained[f"perception.{name}"], tensor), name


def test_ppo_and_dagger_each_anneal_the_learning_rate_and_the_penalty_rises_over_ppo_only():
    plan = stage.Plan(
        batch_per_update=64, num_updates=6, ppo_updates=4, dagger_updates=2, eval_interval=4, dagger_eval_interval=1
    )
    plan = [stage.schedule(update, plan, 1.0, 0.3) for update in range(1, 7)]
    assert [imitating for imitating, _, _ in plan] == [False] * 4 + [True] * 2
    assert [lr for _, lr, _ in plan] == pytest.approx([1.0, 0.75, 0.5, 0.25, 1.0, 0.5])
    assert [reg for _, _, reg in plan] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.3, 0.3])


def test_dagger_evaluates_more_often_than_ppo_its_teacher_first_and_the_last_update_always():
    plan = stage.Plan(
        batch_per_update=64, num_updates=25, ppo_updates=20, dagger_updates=5, eval_interval=8, dagger_eval_interval=2
    )
    assert [update for update in range(1, 26) if plan.evaluates(update)] == [8, 16, 20, 22, 24, 25]


def test_dagger_phase_changes_only_the_eql_actor_and_logs_its_own_returns(catch, tmp_path, monkeypatch):
    """--dagger-share 0.5 of 4 updates: 2 PPO updates, then 2 in which only the EQL actor learns,
    in new envs with sticky actions (mode "imitate")."""
    import pyarrow.parquet as pq

    modes = []

    def recording_make_vector_env(*args, mode, **kwargs):
        modes.append(mode)
        return make_vector_env(*args, mode=mode, **kwargs)

    monkeypatch.setattr(stage, "make_vector_env", recording_make_vector_env)

    def weights(path):
        return load_checkpoint(path).state["agent"]

    first = run(tiny(catch, tmp_path, run_name="ppo", total_steps=2 * 64, freeze_cnn=True, eval_every=1.0))
    both = run(
        tiny(catch, tmp_path, run_name="dagger", total_steps=4 * 64, freeze_cnn=True, dagger_share=0.5, eval_every=1.0)
    )
    assert modes == ["train", "train", "imitate"]  # the PPO run's envs, then the DAgger run's two
    before, after = weights(first.checkpoint), weights(both.checkpoint)
    for name, tensor in before.items():  # the first two updates are the same in both runs
        same = torch.equal(after[name], tensor)
        assert same != name.startswith("eql."), name
    rows = pq.read_table(tmp_path / "runs" / "dagger" / "metrics.parquet").to_pylist()
    assert [row.get("losses/agreement") is not None for row in rows] == [False, False, True, True]
    summary = json.loads((tmp_path / "runs" / "dagger" / "result.json").read_text())
    assert summary["dagger_best_update"] in (3, 4)  # the run ends with the phase's best EQL actor
    with pytest.raises(UsageError, match="dagger-share"):
        run(tiny(catch, tmp_path, dagger_share=1.0))
    with pytest.raises(UsageError, match="neural guidance"):
        run(tiny(catch, tmp_path, dagger_share=0.5, ng=False))


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


def test_an_existing_run_is_replaced_only_with_force(catch, tmp_path):
    first = run(tiny(catch, tmp_path, total_steps=64))
    before = first.checkpoint.stat().st_mtime_ns
    with pytest.raises(InsightError, match="already holds a run"):
        run(tiny(catch, tmp_path, total_steps=64))
    assert first.checkpoint.stat().st_mtime_ns == before
    run(tiny(catch, tmp_path, total_steps=64, force=True))
    assert first.checkpoint.stat().st_mtime_ns != before
    assert [p.name for p in (tmp_path / "runs" / "tiny").glob("run.resume.*.ckpt")] == ["run.resume.1.ckpt"]
    assert len(list((tmp_path / "runs" / "tiny" / "tensorboard").iterdir())) == 1  # the replaced run's curves went


def test_a_run_another_live_train_writes_is_refused_and_a_dead_ones_lock_is_taken(catch, tmp_path):
    run_dir = tmp_path / "runs" / "tiny"
    run_dir.mkdir(parents=True)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (run_dir / stage.LOCK).write_text(str(sleeper.pid))
        with pytest.raises(InsightError, match=f"pid {sleeper.pid}"):
            run(tiny(catch, tmp_path, total_steps=64))
    finally:
        sleeper.kill()
        sleeper.wait()
    run(tiny(catch, tmp_path, total_steps=64))  # the lock's writer is gone
    assert not (run_dir / stage.LOCK).exists()


def test_a_failed_train_leaves_no_empty_run_folder(catch, tmp_path):
    with pytest.raises(InsightError):
        run(tiny(catch, tmp_path, perception=tmp_path / "missing.ckpt"))
    assert not (tmp_path / "runs" / "tiny").exists()


def _train_args(catch, *options):
    """`insight train` on the Catch fixture with its pretrained CNN, 4 envs x 16 steps on the CPU."""
    return [
        "train",
        "--game",
        "Catch",
        "--load-cnn",
        "--perception",
        str(catch / "perception.ckpt"),
        "--dataset",
        str(catch / "dataset"),
        "--num-envs",
        "4",
        "--num-steps",
        "16",
        "--device",
        "cpu",
        *options,
    ]


def _train_command(catch, *extra):
    options = ("--total-steps", "1280", "--eval-episodes", "0", "--eval-every", "0.05", "--run-name", "killed")
    return [sys.executable, "-m", "insight_cli", *_train_args(catch, *options, *extra)]


def _wait_for(path, process, seconds=120):
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None and time.monotonic() < deadline, "train ended before its first save"
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("signal_number, code", [(signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 130)])
def test_a_killed_or_terminated_train_resumes(catch, tmp_path, signal_number, code):
    """SIGKILL may land inside a save (one every update here); SIGTERM is handled like Ctrl-C."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(
        _train_command(catch), cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    run_dir = tmp_path / "data" / "Catch" / "runs" / "killed"
    _wait_for(run_dir / "run.ckpt", process)
    time.sleep(0.3)  # into the saves that follow the first one
    process.send_signal(signal_number)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == code, stderr
    assert not (run_dir / stage.LOCK).exists() or signal_number == signal.SIGKILL
    resumed = subprocess.run(
        _train_command(catch, "--resume"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(run_dir / "run.ckpt").meta["update"] == 20
    assert not list(run_dir.glob(".*.tmp*"))  # the killed save's temporary is gone


def test_a_refining_update_zeroes_perception_weights_decayed_below_any_effect():
    agent = Agent(AgentConfig(PerceptionConfig(n_objects=2, hidden=16, encoder="nature"), n_actions=3))
    optimizer = stage._optimizer(agent, TrainConfig(game="Catch"))
    weight = agent.perception.encoder.project[0].weight
    with torch.no_grad():
        weight[0, :2] = torch.tensor([1e-39, 0.5])
    for parameter in agent.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    assert weight[0, 0].item() == 0.0 and abs(weight[0, 1].item() - 0.5) < 1e-3


def test_the_eql_actor_imitates_the_games_effects():
    from insight_cli.games import get_game

    assert stage._ppo_settings(TrainConfig(game="Pong"), get_game("Pong")).effects == (0, 0, 2, 3, 4, 5)
    assert stage._ppo_settings(TrainConfig(game="Catch"), get_game("Catch")).effects == (0, 1, 2)
