import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from insight_cli.checkpoint import load_checkpoint, save_checkpoint
from insight_cli.cli import app
from insight_cli.errors import InsightError, UsageError
from insight_cli.evaluate.stage import EvaluateConfig
from insight_cli.evaluate.stage import run as evaluate
from insight_cli.extract_policy import MAX_TERMS
from insight_cli.extract_policy.export import read_policy
from insight_cli.extract_policy.rollouts import Player
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


def test_by_default_the_equations_fit_ten_terms_and_the_tradeoff_is_measured(catch_run, tmp_path):
    result = run(ExtractConfig(checkpoint=catch_run, out=tmp_path, device="cpu"))
    assert max(result.policy.term_counts) <= MAX_TERMS and result.fidelity["rollout_fidelity"] >= 0.95
    assert result.left_out == {"y_paddle_1..4": "never moves"}  # the paddle stays on the bottom row
    assert {v.object for v in result.policy.used_variables} == {"ball", "paddle"}
    assert [(row["method"], row["budget"]) for row in result.tradeoff if row["chosen"]] == [(result.policy.method, 10)]

    pruned = sorted(
        (row for row in result.tradeoff if row["method"] == "pruned" and row["budget"]), key=lambda row: row["budget"]
    )
    assert {row["budget"] for row in pruned} >= {2, 5, 10, 20}
    assert all(row["terms"] <= row["budget"] for row in pruned)
    assert [row["terms"] for row in pruned] == sorted(row["terms"] for row in pruned)  # more budget, never fewer terms
    thresholds = [row["threshold"] for row in pruned]
    assert thresholds == sorted(thresholds, reverse=True)  # and never more pruning
    assert any(row["budget"] is None for row in result.tradeoff)  # the whole network is small enough to measure

    assert pq.read_table(tmp_path / "policy_tradeoff.parquet").to_pylist() == result.tradeoff
    assert (tmp_path / "policy_tradeoff.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    document = json.loads((tmp_path / "policy.json").read_text())
    assert document["method"] == result.policy.method and document["tradeoff"] == result.tradeoff
    assert document["left_out"] == result.left_out and document["max_terms"] == 10


def test_a_refit_round_trips_through_policy_py_and_the_symbolic_actor(catch_run, tmp_path, monkeypatch):
    seeds = []  # the seed of every rollout: the refit's rounds must not see the states fidelity is measured on
    real = Player.play_all
    monkeypatch.setattr(
        Player, "play_all", lambda self, policies, seed: seeds.append(seed) or real(self, policies, seed)
    )
    result = run(
        ExtractConfig(checkpoint=catch_run, fit="refit", refit_rounds=2, max_steps=100, out=tmp_path, device="cpu")
    )
    fitted_on = [seed for seed in seeds if seed != 0]
    assert len(fitted_on) == 2 and all(seed >= 2 for seed in fitted_on)  # 2 rounds, apart from seeds 0 and 1
    assert set(seeds) - set(fitted_on) == {0}  # every measurement from the EQL actor's start
    assert result.fidelity["rollout_states"] <= 2 * 100  # two episodes cut at --max-steps
    policy = result.policy
    assert policy.method == "refit" and max(policy.term_counts) <= MAX_TERMS
    assert {row["method"] for row in result.tradeoff} == {"refit", "pruned"}  # refits, and the whole network
    refits = sorted((row for row in result.tradeoff if row["method"] == "refit"), key=lambda row: row["budget"])
    assert [row["budget"] for row in refits] == [1, 2, 3, 5, 10, 20]
    assert [row["terms"] for row in refits] == sorted(row["terms"] for row in refits)
    assert all(row["terms"] <= row["budget"] for row in refits)
    assert result.fidelity["held_out_fidelity"] >= 0.9 and result.fidelity["rollout_fidelity"] >= 0.9

    loaded, document = read_policy(tmp_path / "policy.json")
    assert loaded.method == "refit" and loaded.terms == policy.terms
    assert "refitted to the EQL actor's decisions" in (tmp_path / "policy.md").read_text()
    namespace: dict = {}
    exec((tmp_path / "policy.py").read_text(), namespace)
    assert "refitted" in namespace["__doc__"]
    coordinates = np.random.default_rng(0).random((50, 2, 4, 2))
    np.testing.assert_array_equal(namespace["act"](coordinates), policy.act(coordinates))

    settings = dict(checkpoint=catch_run, episodes=2, out=tmp_path / "evaluation", device="cpu")
    symbolic = evaluate(EvaluateConfig(actor="symbolic", policy=tmp_path / "policy.json", **settings)).summary
    eql = evaluate(EvaluateConfig(actor="eql", **settings)).summary
    assert symbolic["episodes"] == 2 and symbolic["mean"] == pytest.approx(eql["mean"], abs=2.0)


def test_policies_played_together_play_exactly_as_they_do_alone(catch_run, tmp_path):
    import torch

    from insight_cli.games import get_game
    from insight_cli.train.agent import load_agent

    policy = run(ExtractConfig(checkpoint=catch_run, episodes=0, out=tmp_path, device="cpu")).policy
    agent, _ = load_agent(catch_run, torch.device("cpu"))
    with Player(agent, get_game("Catch"), 3, 60, torch.device("cpu")) as player:
        together = player.play_all([None, policy, policy], seed=5)
        alone = [player.play(None, 5), player.play(policy, 5)]
    for mine, reference in zip(together, [alone[0], alone[1], alone[1]]):
        for field in ("returns", "actions", "labels"):
            np.testing.assert_array_equal(getattr(mine, field), getattr(reference, field))
        np.testing.assert_allclose(mine.inputs, reference.inputs, atol=1e-4)  # batch size moves the last digits
    assert len(together[0].returns) == 3 and len(together[0].inputs) > 60  # 3 episodes each


def test_pruning_alone_that_cannot_fit_the_budget_is_an_error(catch_run, tmp_path, monkeypatch):
    from insight_cli.extract_policy import stage

    # Whether some threshold leaves a single term depends on the fixture's weights (it did on one
    # machine and not on another), so the search is made to find none at the budget of 1.
    search = stage.pruned_policies
    monkeypatch.setattr(stage, "pruned_policies", lambda *args: {k: v for k, v in search(*args).items() if k != 1})
    with pytest.raises(InsightError, match="at most 1 terms"):
        run(ExtractConfig(checkpoint=catch_run, max_terms=1, fit="prune", episodes=0, out=tmp_path, device="cpu"))
    assert not any(tmp_path.iterdir())


def test_threshold_that_prunes_everything(catch_run, tmp_path):
    with pytest.raises(InsightError, match="prunes every variable"):
        run(ExtractConfig(checkpoint=catch_run, max_terms=None, threshold=1e6, out=tmp_path, device="cpu"))
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "settings,message",
    [
        (dict(digits=0), "--digits"),
        (dict(fit="refit", max_terms=None), "--fit refit needs a term budget"),
        (dict(fit="distil"), "--fit must be one of"),
        (dict(min_fidelity=1.5), "--min-fidelity"),
        (dict(max_steps=0), "--max-steps"),
    ],
)
def test_bad_settings_are_usage_errors(catch_run, tmp_path, settings, message):
    with pytest.raises(UsageError, match=message):
        run(ExtractConfig(checkpoint=catch_run, out=tmp_path, device="cpu", **settings))


def test_cli(catch_run, tmp_path):
    result = runner.invoke(
        app, ["extract-policy", str(catch_run), "--episodes", "1", "--out", str(tmp_path), "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "RIGHT" in result.output and "fidelity" in result.output and "policy.py" in result.output
    assert "length against fidelity" in result.output and "policy_tradeoff.png" in result.output
    assert "variables used: " in result.output and "left out: y_paddle_1..4 (never moves)" in result.output
    result = runner.invoke(
        app,
        ["extract-policy", str(catch_run), "--max-terms", "none", "--threshold", "1e6", "--out", str(tmp_path / "x")],
    )
    assert result.exit_code == 1 and "prunes every variable" in result.output
    assert len(result.output.strip().splitlines()) <= 2
    result = runner.invoke(app, ["extract-policy", str(catch_run), "--max-terms", "0"])
    assert result.exit_code == 2 and "at least 1" in result.output


def test_the_whole_network_on_request_agrees_with_the_eql_actor(catch_run, tmp_path):
    """Unpruned and unrounded, the expansion is the actor itself."""
    exact = run(
        ExtractConfig(
            checkpoint=catch_run, max_terms=None, threshold=0.0, digits=15, episodes=0, out=tmp_path, device="cpu"
        )
    )
    assert exact.fidelity["held_out_fidelity"] == 1.0 and exact.returns == {} and exact.left_out == {}
    assert [(row["budget"], row["chosen"]) for row in exact.tradeoff if row["chosen"]] == [(None, True)]
