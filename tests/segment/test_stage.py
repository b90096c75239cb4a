import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from insight_cli.cli import app
from insight_cli.dataset import load_dataset
from insight_cli.envs import make_frame_source
from insight_cli.errors import InsightError, UsageError
from insight_cli.segment import stage
from insight_cli.segment.stage import SegmentConfig, run

runner = CliRunner()


def catch_frames(count):
    source = make_frame_source("Catch", seed=0)
    frames = [source.reset().rgb]
    while len(frames) < count:
        frames.append(source.step(1)[0].rgb)
    return frames


def test_catch_end_to_end(tmp_path):
    result = run(SegmentConfig(game="Catch", frames=400, out=tmp_path / "ds"))
    dataset = load_dataset(result.dataset)
    assert {track["name"] for track in result.tracks} == {"ball", "paddle"}
    assert result.frames == 400 and result.train_frames + result.test_frames == 400
    objects = dataset.objects.to_pydict()
    widths = np.array(objects["x1"]) - np.array(objects["x0"])
    heights = np.array(objects["y1"]) - np.array(objects["y0"])
    is_ball = np.array(objects["name"]) == "ball"
    # Tight boxes: the ball sprite is 4x4 pixels, the paddle 12x3, on an 84x84 screen.
    np.testing.assert_allclose(widths[is_ball] * 84, 4, atol=1e-4)
    np.testing.assert_allclose(heights[~is_ball] * 84, 3, atol=1e-4)
    np.testing.assert_allclose(widths[~is_ball] * 84, 12, atol=1e-4)
    assert (tmp_path / "ds" / "preview.mp4").stat().st_size > 0
    sheet = cv2.imread(str(tmp_path / "ds" / "preview.png"))
    assert sheet is not None and sheet.shape[0] > 84
    assert dataset.meta["run"]["frames_per_second"] > 0


def test_png_folder_input(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(catch_frames(30)):
        cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    result = run(SegmentConfig(game="Catch", frames=1000, input=folder, out=tmp_path / "ds"))
    dataset = load_dataset(result.dataset)
    assert result.frames == 30 and dataset.meta["source"] == str(folder)
    assert set(dataset.frames.column("action").to_pylist()) == {-1}
    assert {track["name"] for track in result.tracks} >= {"ball", "paddle"}
    np.testing.assert_array_equal(dataset.rgb(5), catch_frames(30)[5])


def test_video_input(tmp_path):
    import imageio.v3 as iio

    video = tmp_path / "catch.mp4"
    iio.imwrite(video, np.stack(catch_frames(20)), fps=15, codec="libx264", macro_block_size=1)
    result = run(SegmentConfig(game="Catch", frames=12, input=video, out=tmp_path / "ds"))
    assert result.frames == 12
    assert load_dataset(result.dataset).gray_frames().shape == (12, 84, 84)


def empty_folder(path):
    path.mkdir()
    return path


def file_with(suffix, content):
    def make(path):
        path = path.with_suffix(suffix)
        path.write_bytes(content)
        return path

    return make


@pytest.mark.parametrize(
    "make_input,message",
    [
        (empty_folder, "no .png frames"),
        (file_with(".mp4", b"not a video"), "cannot read video"),
        (file_with(".txt", b"hello"), "neither"),
        (lambda path: path / "missing", "does not exist"),
    ],
)
def test_bad_recordings_fail_with_one_line(tmp_path, make_input, message):
    path = make_input(tmp_path / "input")
    with pytest.raises(InsightError, match=message):
        run(SegmentConfig(game="Catch", input=path, out=tmp_path / "ds"))
    assert not (tmp_path / "ds").exists()


def test_bad_options_are_usage_errors(tmp_path):
    with pytest.raises(UsageError):
        run(SegmentConfig(game="Catch", backend="yolo", out=tmp_path / "ds"))
    with pytest.raises(UsageError):
        run(SegmentConfig(game="Catch", frames=0, out=tmp_path / "ds"))


def test_names_file_renames_objects(tmp_path):
    names = tmp_path / "names.toml"
    names.write_text('[names]\nball = "puck"\n')
    result = run(SegmentConfig(game="Catch", frames=50, names=names, out=tmp_path / "ds"))
    assert {track["name"] for track in result.tracks} == {"puck", "paddle"}
    names.write_text("ball = 3")
    with pytest.raises(InsightError, match="not a valid name"):
        run(SegmentConfig(game="Catch", frames=50, names=names, out=tmp_path / "ds2"))


def test_interrupted_run_leaves_no_dataset(tmp_path, monkeypatch):
    calls = []

    def segmenter_that_breaks(config, game, sample):
        def segment(rgb):
            calls.append(1)
            if len(calls) > 20:
                raise KeyboardInterrupt
            return real(rgb)

        real = real_make(config, game, sample)
        return segment

    real_make = stage.make_segmenter
    monkeypatch.setattr(stage, "make_segmenter", segmenter_that_breaks)
    with pytest.raises(KeyboardInterrupt):
        run(SegmentConfig(game="Catch", frames=100, out=tmp_path / "ds"))
    assert list(tmp_path.iterdir()) == []


def test_cli_segment_prints_a_summary(tmp_path):
    result = runner.invoke(app, ["segment", "--game", "Catch", "--frames", "60", "--out", str(tmp_path / "ds")])
    assert result.exit_code == 0, result.output
    assert "paddle" in result.output and "60 frames" in result.output
    assert load_dataset(tmp_path / "ds").meta["counts"]["frames"] == 60
    bad = runner.invoke(app, ["segment", "--game", "Catch", "--input", str(tmp_path / "nope")])
    assert bad.exit_code == 1 and "does not exist" in bad.output


def insight(*args, cwd):
    """The CLI as a user runs it: a process of its own."""
    command = [sys.executable, "-m", "insight_cli", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)


def one_line_error(completed, code=1):
    lines = completed.stderr.strip().splitlines()
    assert completed.returncode == code and len(lines) == 1 and lines[0].startswith("error:"), completed.stderr
    assert "a bug?" not in lines[0]
    return lines[0]


def test_out_that_is_not_a_dataset_is_kept_unless_forced(tmp_path):
    (tmp_path / "userdir" / "sub").mkdir(parents=True)
    (tmp_path / "userdir" / "thesis.txt").write_text("precious")
    refused = insight("segment", "--game", "Catch", "--frames", "10", "--out", "userdir", cwd=tmp_path)
    assert "not only an insight dataset" in one_line_error(refused) and "--force" in refused.stderr
    assert (tmp_path / "userdir" / "thesis.txt").read_text() == "precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userdir"]  # refused before any work
    forced = insight("segment", "--game", "Catch", "--frames", "10", "--out", "userdir", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert load_dataset(tmp_path / "userdir").meta["counts"]["frames"] == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["userdir"]


def test_a_game_folder_with_runs_is_not_a_dataset(tmp_path):
    run(SegmentConfig(game="Catch", frames=10, out=tmp_path / "Catch" / "dataset"))
    (tmp_path / "Catch" / "runs").mkdir()
    with pytest.raises(InsightError, match="not only an insight dataset"):
        run(SegmentConfig(game="Catch", frames=10, out=tmp_path / "Catch"))
    assert load_dataset(tmp_path / "Catch" / "dataset")
    run(SegmentConfig(game="Catch", frames=12, out=tmp_path / "Catch" / "dataset"))  # its own dataset: replaced
    assert load_dataset(tmp_path / "Catch" / "dataset").meta["counts"]["frames"] == 12


def test_absurd_frame_counts_and_a_missing_gpu_are_refused_up_front(tmp_path):
    huge = insight("segment", "--game", "Catch", "--frames", str(10**23), "--out", "ds", cwd=tmp_path)
    assert "--frames must be between 1 and 10,000,000" in one_line_error(huge, code=2)
    if not torch.cuda.is_available():
        cuda = insight("segment", "--game", "Catch", "--frames", "10", "--device", "cuda", "--out", "ds", cwd=tmp_path)
        assert "no CUDA GPU" in one_line_error(cuda)
    assert not any(tmp_path.iterdir())


def test_png_frames_of_different_sizes_are_refused(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, frame in enumerate(catch_frames(5)):
        frame = cv2.resize(frame, (100, 90)) if index == 3 else frame
        cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    with pytest.raises(InsightError, match="differ in size: 0003.png is 100x90, 0000.png is 84x84"):
        run(SegmentConfig(game="Catch", input=folder, out=tmp_path / "ds"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["frames"]


@pytest.mark.parametrize(
    "content,message",
    [
        ('ball = "ﬁsh"', "'ﬁsh' is not a valid name"),
        ('ball = "puck"\npaddle = "puck"', "more than one object the name 'puck'"),
        ('ball = "paddle"', "is the name of another object"),
        ('bal = "puck"', "Catch has no object named 'bal'"),
        ('obj = "puck"', "Catch has no object named 'obj'"),
        ('bullet = "x"\n[names]\nball = "puck"', "both under [names] and outside it"),
    ],
)
def test_bad_names_files_are_refused_before_any_work(tmp_path, content, message):
    names = tmp_path / "names.toml"
    names.write_text(content)
    with pytest.raises(InsightError, match=re.escape(message)):
        run(SegmentConfig(game="Catch", frames=10, names=names, out=tmp_path / "ds"))
    with pytest.raises(InsightError, match="is a directory"):
        run(SegmentConfig(game="Catch", frames=10, names=tmp_path, out=tmp_path / "ds"))
    assert not (tmp_path / "ds").exists()


def test_names_file_may_swap_names_and_rename_uncatalogued_objects(tmp_path):
    names = tmp_path / "names.toml"
    names.write_text('ball = "paddle"\npaddle = "ball"\nobj7 = "bullet"\n')
    result = run(SegmentConfig(game="Catch", frames=20, names=names, out=tmp_path / "ds"))
    assert {track["track_id"]: track["name"] for track in result.tracks} == {0: "paddle", 1: "ball"}
