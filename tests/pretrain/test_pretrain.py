import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from test_checkpoint import perception_checkpoint
from typer.testing import CliRunner

from insight_cli.checkpoint import load_checkpoint
from insight_cli.cli import app
from insight_cli.dataset import load_dataset
from insight_cli.errors import InsightError, UsageError
from insight_cli.perception.data import choose_slots, decode, shift_batch
from insight_cli.perception.losses import PerceptionTargets
from insight_cli.perception.model import PerceptionConfig, PerceptionNet
from insight_cli.pretrain import preview
from insight_cli.pretrain.metrics import average_precision, f1_score
from insight_cli.pretrain.stage import PretrainConfig, _optimizer, _stop_if_diverged, run
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
    targets = PerceptionTargets(
        torch.ones(16, 1, 4, dtype=torch.bool), torch.full((16, 1, 4, 2), 0.5), torch.zeros(16, 1, 2)
    )
    margins = torch.tensor([[0, 3, 2, 0]]).expand(16, 4)  # may move right up to 3 and up up to 2
    _, moved = shift_batch(stacks, targets, margins, 8, torch.Generator().manual_seed(1))
    dx, dy = ((moved.coordinates - 0.5) * 84)[:, 0, 0].T
    assert dx.min() >= 0 and dx.max() <= 3 and dy.min() >= -2 and dy.max() <= 0


def test_shift_with_a_background_moves_the_objects_and_keeps_the_static_picture():
    """A wall band (in the background) stays put; the blob (not in it) moves with its label."""
    background = torch.full((84, 84), 77 / 255)  # a median frame / 255, as Encoder.set_background keeps it
    background[:6] = 230 / 255  # the top wall
    stacks = (background * 255).round().to(torch.uint8).expand(8, 4, 84, 84).clone()
    stacks[:, :, 40:42, 40:42] = 20  # a dark blob on the field
    targets = PerceptionTargets(
        torch.ones(8, 1, 4, dtype=torch.bool), torch.full((8, 1, 4, 2), 41 / 84), torch.zeros(8, 1, 2)
    )
    margins = torch.full((8, 4), 8)
    shifted, moved = shift_batch(stacks, targets, margins, 8, torch.Generator().manual_seed(2), background)
    assert torch.equal(shifted[:, :, :6], stacks[:, :, :6])  # the wall did not move
    assert (moved.coordinates != targets.coordinates).any()
    for index in range(8):
        rows, cols = torch.nonzero(shifted[index, 0] == 20, as_tuple=True)
        assert len(rows) == 4 and (shifted[index, 0] != 20).sum() == 84 * 84 - 4  # moved whole, left no trace
        centre = torch.stack([(cols.float().mean() + 0.5) / 84, (rows.float().mean() + 0.5) / 84])
        assert torch.allclose(centre, moved.coordinates[index, 0, 0], atol=1e-5)


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
    assert not list(tmp_path.glob(".*"))  # no temporaries left


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
        app,
        [
            "pretrain",
            "--game",
            "Catch",
            "--dataset",
            str(catch_dataset),
            "--epochs",
            "1",
            "--out",
            str(tmp_path / "p.ckpt"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "existence AP" in result.output
    bad = runner.invoke(app, ["pretrain", "--game", "Catch", "--dataset", str(catch_dataset), "--n-objects", "1"])
    assert bad.exit_code == 2 and "smaller than" in bad.output


def with_objects(dataset, path, change):
    """A copy of `dataset` at `path` whose objects.parquet columns `change` rewrote in place."""
    shutil.copytree(dataset, path)
    table = pq.read_table(path / "objects.parquet")
    columns = table.to_pydict()
    change(columns)
    pq.write_table(pa.Table.from_pydict(columns, schema=table.schema), path / "objects.parquet")
    return path


@pytest.mark.parametrize("value", [float("nan"), float("inf"), None])
def test_non_finite_boxes_are_refused_before_training_and_leave_no_folder(catch_dataset, tmp_path, value):
    dataset = with_objects(catch_dataset, tmp_path / "dataset", lambda columns: columns["cx"].__setitem__(5, value))
    with pytest.raises(InsightError, match="objects.parquet has a non-finite cx in 1 rows"):
        run(tiny(dataset, tmp_path / "out" / "p.ckpt"))
    assert not (tmp_path / "out").exists()


def test_objects_of_tracks_the_catalogue_lacks_are_refused(catch_dataset, tmp_path):
    def renumber(columns):
        columns["track_id"] = [track_id + 10 for track_id in columns["track_id"]]

    dataset = with_objects(catch_dataset, tmp_path / "dataset", renumber)
    with pytest.raises(InsightError, match=r"track ids that dataset.json does not list \(10, 11\)"):
        run(tiny(dataset, tmp_path / "p.ckpt"))


def test_a_dataset_without_objects_in_its_frames_is_refused(catch_dataset, tmp_path):
    def empty(columns):
        for values in columns.values():
            values.clear()

    dataset = with_objects(catch_dataset, tmp_path / "dataset", empty)
    with pytest.raises(InsightError, match="objects.parquet holds none of the 2 objects to learn"):
        run(tiny(dataset, tmp_path / "p.ckpt"))


def test_a_diverged_epoch_stops_pretraining_before_it_is_saved():
    model, record = torch.nn.Linear(2, 2), {"epoch": 3, "train_total": 0.5, "test_loss": 0.4}
    _stop_if_diverged(model, record)
    with pytest.raises(InsightError, match=r"diverged in epoch 3 \(train loss inf, test loss 0.4\)"):
        _stop_if_diverged(model, {**record, "train_total": float("inf")})
    with torch.no_grad():
        model.weight[0, 0] = float("nan")
    with pytest.raises(InsightError, match="diverged in epoch 3"):
        _stop_if_diverged(model, record)


def test_an_out_directory_is_refused_before_training(catch_dataset, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "insight_cli",
            "pretrain",
            "--game",
            "Catch",
            "--dataset",
            str(catch_dataset),
            "--out",
            str(tmp_path),
            "--epochs",
            "1",
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1 and "epoch" not in result.stdout
    assert result.stderr == f"error: cannot write {tmp_path}: it is a directory (give the name of the file to write)\n"


def test_train_refuses_a_perception_checkpoint_with_non_finite_weights(catch_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    poisoned = torch.full((8,), float("nan"))
    path = perception_checkpoint(tmp_path / "p.ckpt", weights={"encoder.project.2.weight": poisoned})
    result = runner.invoke(
        app,
        [
            "train",
            "--game",
            "Catch",
            "--load-cnn",
            "--perception",
            str(path),
            "--dataset",
            str(catch_dataset),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 1 and "non-finite weights (encoder.project.2.weight)" in result.output
    assert list(tmp_path.iterdir()) == [path]


def test_an_interrupted_preview_leaves_no_partial_picture(catch_dataset, tmp_path, monkeypatch):
    def interrupted(path, frames):
        Path(path).write_bytes(b"\x89PNG half")
        raise KeyboardInterrupt

    monkeypatch.setattr(preview, "write_contact_sheet", interrupted)
    dataset = load_dataset(catch_dataset)
    slots = choose_slots(dataset, "auto")
    model = PerceptionNet(PerceptionConfig(n_objects=len(slots), hidden=8))
    with pytest.raises(KeyboardInterrupt):
        preview.write_preview(
            tmp_path / "p.preview.png", model, decode(dataset, slots, torch.device("cpu")), dataset, slots
        )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_tiny_pretrain_on_catch_learns_where_the_objects_are(tmp_path):
    """About 450 gradient steps: coordinates go from guessing to a few pixels, existence is right."""
    segment(SegmentConfig(game="Catch", frames=400, seed=1, out=tmp_path / "dataset"))
    result = run(tiny(tmp_path / "dataset", tmp_path / "p.ckpt", epochs=30, hidden=256, batch_size=16, seed=0))
    first, best = result.history[0], result.metrics
    assert best["mae_x100"] < 7 and best["mae_x100"] < 0.4 * first["mae_x100"]
    assert best["existence_ap"] > 0.95


def test_the_cpu_presets_perception_options_reach_the_checkpoint(catch_dataset, tmp_path):
    result = run(tiny(catch_dataset, tmp_path / "p.ckpt", epochs=1, encoder="nature", hidden=24, min_seen=0.5))
    checkpoint = load_checkpoint(result.checkpoint, kind="perception")
    assert checkpoint.config["encoder"] == "nature" and checkpoint.config["hidden"] == 24
    background = checkpoint.state["model"]["encoder.background"]
    assert background.shape == (84, 84) and background.max() <= 1.0  # Catch: a black field
    for bad in (dict(encoder="resnet"), dict(min_seen=1.5), dict(min_seen=float("nan"))):
        with pytest.raises(UsageError):
            run(tiny(catch_dataset, tmp_path / "q.ckpt", **bad))


def test_min_seen_keeps_only_objects_seen_often_enough():
    from types import SimpleNamespace

    seen = {"score": 100, "ball": 60, "digit7": 5}
    objects = [
        {"track_id": index, "name": name, "frames_seen": count} for index, (name, count) in enumerate(seen.items())
    ]
    dataset = SimpleNamespace(meta={"objects": objects, "counts": {"frames": 100}}, path=Path("d"))
    assert [entry["name"] for entry in choose_slots(dataset, "auto")] == ["score", "ball", "digit7"]
    assert [entry["name"] for entry in choose_slots(dataset, "auto", min_seen=0.1)] == ["score", "ball"]
    assert [entry["name"] for entry in choose_slots(dataset, "2", min_seen=0.1)] == ["score", "ball"]
    with pytest.raises(UsageError, match="lower --min-seen"):
        choose_slots(dataset, "auto", min_seen=1.01)


def test_a_pretrain_step_zeroes_weights_decayed_below_any_effect():
    model = PerceptionNet(PerceptionConfig(n_objects=2, hidden=16, encoder="nature"))
    optimizer = _optimizer(model, PretrainConfig(game="Catch"))
    weight = model.encoder.project[0].weight
    with torch.no_grad():
        weight[0, :4] = torch.tensor([1e-39, -1e-30, 1e-21, 0.5])
    for parameter in model.parameters():
        parameter.grad = torch.zeros_like(parameter)
    optimizer.step()
    assert weight[0, :3].tolist() == [0.0, 0.0, 0.0] and abs(weight[0, 3].item() - 0.5) < 1e-3
