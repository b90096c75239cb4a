import json

import numpy as np
import pytest
from typer.testing import CliRunner

from insight_cli.checkpoint import load_checkpoint, save_checkpoint
from insight_cli.cli import app
from insight_cli.errors import InsightError, UsageError
from insight_cli.extract_policy.stage import ExtractConfig, run

runner = CliRunner()


def states(ball_x: float, paddle_x: float) -> np.ndarray:
    """(1, 2, 4, 2) coordinates of a ball above a paddle, both still for four frames."""
    coordinates = np.zeros((1, 2, 4, 2))
    coordinates[0, 0, :] = (ball_x, 0.5)
    coordinates[0, 1, :] = (paddle_x, 0.95)
    return coordinates


def test_catch_policy_reads_move_toward_the_ball_and_plays_like_the_eql_actor(catch_run, tmp_path):
    result = run(ExtractConfig(checkpoint=catch_run, max_terms=4, episodes=4, out=tmp_path, device="cpu"))
    policy = result.policy
    assert policy.actions == ["NOOP", "RIGHT", "LEFT"] and max(policy.term_counts) <= 4
    assert {"x_ball_4", "x_paddle_4"} <= {v.name for v in policy.used_variables}
    right, left = policy.actions.index("RIGHT"), policy.actions.index("LEFT")
    grid = [(b, p) for b in np.linspace(0.1, 0.9, 9) for p in np.linspace(0.1, 0.9, 9) if abs(b - p) >= 0.15]
    chosen = [policy.act(states(b, p))[0] for b, p in grid]
    wanted = [right if b > p else left for b, p in grid]
    assert np.mean(np.equal(chosen, wanted)) >= 0.95
    assert result.fidelity["held_out_fidelity"] >= 0.95 and result.fidelity["rollout_fidelity"] >= 0.95
    assert result.returns["symbolic"] == pytest.approx(result.returns["eql"], abs=1.0)

    document = json.loads((tmp_path / "policy.json").read_text())
    assert document["game"] == "Catch" and document["readable"] and document["fidelity"] == result.fidelity
    assert [a["name"] for a in document["actions"]] == policy.actions
    assert r"x_{\mathrm{ball},4}" in (tmp_path / "policy.md").read_text()
    for name in ("policy.tex", "policy.py"):
        assert (tmp_path / name).stat().st_size > 0


def test_not_a_run_checkpoint(catch_run, tmp_path):
    perception = catch_run.parents[2] / "perception.ckpt"
    with pytest.raises(InsightError, match="expected a run checkpoint"):
        run(ExtractConfig(checkpoint=perception, out=tmp_path, device="cpu"))
    assert not any(tmp_path.iterdir())


def test_run_without_an_eql_actor(catch_run, tmp_path):
    checkpoint = load_checkpoint(catch_run)
    agent = {key: value for key, value in checkpoint.state["agent"].items() if not key.startswith("eql.")}
    save_checkpoint(tmp_path / "neural.ckpt", "run", checkpoint.config, checkpoint.meta, {"agent": agent})
    with pytest.raises(InsightError, match="without an EQL actor"):
        run(ExtractConfig(checkpoint=tmp_path / "neural.ckpt", out=tmp_path / "out", device="cpu"))
    assert not (tmp_path / "out").exists()


def test_threshold_that_prunes_everything(catch_run, tmp_path):
    with pytest.raises(InsightError, match="prunes every variable"):
        run(ExtractConfig(checkpoint=catch_run, threshold=1e6, out=tmp_path, device="cpu"))
    assert not any(tmp_path.iterdir())
    with pytest.raises(UsageError, match="--digits"):
        run(ExtractConfig(checkpoint=catch_run, digits=0, out=tmp_path, device="cpu"))


def test_cli(catch_run, tmp_path):
    result = runner.invoke(app, ["extract-policy", str(catch_run), "--max-terms", "4", "--episodes", "1",
                                 "--out", str(tmp_path), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "RIGHT" in result.output and "fidelity" in result.output and "policy.py" in result.output
    result = runner.invoke(app, ["extract-policy", str(catch_run), "--threshold", "1e6", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "prunes every variable" in result.output
    assert len(result.output.strip().splitlines()) <= 2


def test_fidelity_is_reported_against_the_eql_actor(catch_run, tmp_path):
    """Heavier pruning can only cost fidelity: the unpruned expansion agrees everywhere."""
    exact = run(ExtractConfig(checkpoint=catch_run, threshold=0.0, digits=15, episodes=0, out=tmp_path, device="cpu"))
    assert exact.fidelity["held_out_fidelity"] == 1.0 and exact.returns == {}
