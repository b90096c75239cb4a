import cv2
import numpy as np
import pytest
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
