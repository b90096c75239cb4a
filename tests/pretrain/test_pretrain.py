import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from insight_cli.checkpoint import load_checkpoint
from insight_cli.cli import app
from insight_cli.errors import InsightError, UsageError
from insight_cli.perception.losses import PerceptionTargets
from insight_cli.pretrain.data import shift_batch
from insight_cli.pretrain.metrics import average_precision, f1_score
from insight_cli.pretrain.stage import PretrainConfig, run
from insight_cli.segment.stage import SegmentConfig
from insight_cli.segment.stage import run as segment

runner = CliRunner()


@pytest.fixture(scope="module")
def catch_dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("catch") / "dataset"
    segment(SegmentConfig(game="Catch", frames=300, out=path))
    return path


def tiny(dataset, out, **overrides):
    settings = dict(game="Catch", dataset=dataset, out=out, epochs=2, hidden=32, batch_size=32, seed=3)
    return PretrainConfig(**{**settings, **overrides})


def test_shift_moves_labels_with_pixels():
    batch = 64
    generator = torch.Generator().manual_seed(0)
    ys, xs = torch.randint(10, 70, (batch,)), torch.randint(10, 70, (batch,))
    stacks = torch.zeros(batch, 4, 84, 84, dtype=torch.uint8)
    for index in range(batch):
        stacks[index, :, ys[index] : ys[index] + 2, xs[index] : xs[index] + 2] = 200
    centres = torch.stack([(xs + 1) / 84, (ys + 1) / 84], dim=1).view(batch, 1, 1, 2).expand(batch, 1, 4, 2)
    targets = PerceptionTargets(torch.ones(batch, 1, 4, dtype=torch.bool), centres.clone(), torch.zeros(batch, 1, 2))
    margins = torch.stack([xs, 82 - xs, ys, 82 - ys], dim=1)  # free pixels left, right, above, below the blob
    shifted, moved = shift_batch(stacks, targets, margins, max_shift=8, generator=generator)
    offsets = (moved.coordinates - targets.coordinates) * 84
    assert offsets.abs().max() <= 8 + 1e-4 and offsets.abs().sum() > 0
    for index in range(batch):
        rows, cols = torch.nonzero(shifted[index, 0] == 200, as_tuple=True)
        assert len(rows) == 4  # the blob is whole: it stayed on screen
        centre = torch.stack([(cols.float().mean() + 0.5) / 84, (rows.float().mean() + 0.5) / 84])
        assert torch.allclose(centre, moved.coordinates[index, 0, 0], atol=1e-5)


def test_shift_respects_margins():
    stacks = torch.zeros(16, 4, 84, 84, dtype=torch.uint8)
    targets = PerceptionTargets(torch.ones(16, 1, 4, dtype=torch.bool), torch.full((16, 1, 4, 2), 0.5), torch.zeros(16, 1, 2))
    margins = torch.tensor([[0, 3, 2, 0]]).expand(16, 4)  # may move right up to 3 and up up to 2
    _, moved = shift_batch(stacks, targets, margins, 8, torch.Generator().manual_seed(1))
    dx, dy = ((moved.coordinates - 0.5) * 84)[:, 0, 0].T
    assert dx.min() >= 0 and dx.max() <= 3 and dy.min() >= -2 and dy.max() <= 0


def test_average_precision_and_f1():
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0])) == 1.0
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([0, 1, 1])) == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert f1_score(np.array([True, True, False]), np.array([True, False, False])) == pytest.approx(2 / 3)


def test_checkpoint_and_reports(catch_dataset, tmp_path):
    result = run(tiny(catch_dataset, tmp_path / "perception.ckpt"))
    checkpoint = load_checkpoint(result.checkpoint, kind="perception")
    assert checkpoint.config["n_objects"] == 2 and checkpoint.config["hidden"] == 32
    assert [entry["name"] for entry in checkpoint.meta["objects"]] == ["ball", "paddle"]
    assert checkpoint.meta["dataset_fingerprint"] and checkpoint.meta["game"] == "Catch"
    assert len(result.history) == 2 and result.best_epoch in (1, 2)
    for suffix in (".metrics.parquet", ".json", ".preview.png"):
        assert (tmp_path / f"perception{suffix}").stat().st_size > 0


def test_resume_continues_exactly(catch_dataset, tmp_path):
    straight = run(tiny(catch_dataset, tmp_path / "a" / "perception.ckpt", epochs=3))
    run(tiny(catch_dataset, tmp_path / "b" / "perception.ckpt", epochs=2))
    resumed = run(tiny(catch_dataset, tmp_path / "b" / "perception.ckpt", epochs=3, resume=True))
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert resumed.history[-1]["test_loss"] == pytest.approx(straight.history[-1]["test_loss"], rel=1e-5)
    with pytest.raises(InsightError, match="no interrupted run"):
        run(tiny(catch_dataset, tmp_path / "c" / "perception.ckpt", resume=True))


def test_bad_inputs(catch_dataset, tmp_path):
    with pytest.raises(InsightError, match="no dataset"):
        run(tiny(tmp_path / "missing", tmp_path / "p.ckpt"))
    with pytest.raises(UsageError, match="smaller than the dataset's 2 objects"):
        run(tiny(catch_dataset, tmp_path / "p.ckpt", n_objects="1"))
    with pytest.raises(InsightError, match="Catch dataset, not Pong"):
        run(tiny(catch_dataset, tmp_path / "p.ckpt", game="Pong"))
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(InsightError, match="cannot write"):
        run(tiny(catch_dataset, tmp_path / "file" / "p.ckpt", epochs=1))
    with pytest.raises(UsageError):
        run(tiny(catch_dataset, tmp_path / "p.ckpt", epochs=0))


def test_cli_pretrain(catch_dataset, tmp_path):
    result = runner.invoke(
        app, ["pretrain", "--game", "Catch", "--dataset", str(catch_dataset), "--epochs", "1", "--out", str(tmp_path / "p.ckpt")]
    )
    assert result.exit_code == 0, result.output
    assert "existence AP" in result.output
    bad = runner.invoke(app, ["pretrain", "--game", "Catch", "--dataset", str(catch_dataset), "--n-objects", "1"])
    assert bad.exit_code == 2 and "smaller than" in bad.output


@pytest.mark.slow
def test_tiny_pretrain_on_catch_learns_where_the_objects_are(tmp_path):
    """About 450 gradient steps: coordinates go from guessing to a few pixels, existence is right."""
    segment(SegmentConfig(game="Catch", frames=400, seed=1, out=tmp_path / "dataset"))
    result = run(tiny(tmp_path / "dataset", tmp_path / "p.ckpt", epochs=30, hidden=256, batch_size=16, seed=0))
    first, best = result.history[0], result.metrics
    assert best["mae_x100"] < 7 and best["mae_x100"] < 0.4 * first["mae_x100"]
    assert best["existence_ap"] > 0.95
