import numpy as np
import pytest

from insight_cli.games import GameSpec, ObjectSpec, get_game
from insight_cli.segment.classic import ClassicSegmenter, background_model, pack_colors, unpack_color
from insight_cli.segment.detections import detections_from_masks

BACKGROUND = (10, 20, 30)
WALL = (236, 236, 236)
RED, GREEN = (200, 72, 72), (92, 186, 92)

TOY = GameSpec(
    name="Toy",
    task="A made-up game for tests.",
    actions={"NOOP": "nothing"},
    background=(WALL,),
    objects=(
        ObjectSpec("ball", "white ball", colors=(WALL,), region=(0, 0.1, 1, 0.9), size=((2, 2), (4, 4))),
        ObjectSpec("shield", "static green block", colors=(GREEN,), region=(0, 0.5, 1, 0.9), size=((3, 3), (10, 10))),
    ),
)


def blank(height=60, width=40):
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = BACKGROUND
    frame[:3] = WALL  # a static wall in the ball's colour
    return frame


def fitted():
    frames = np.stack([blank() for _ in range(5)])
    for frame in frames:
        frame[40:45, 5:10] = GREEN  # a shield that never moves: part of the background model
    return ClassicSegmenter(TOY).fit(frames)


def boxes_of(detections):
    return sorted(
        (tuple(map(int, box)), tuple(map(int, color))) for box, color in zip(detections.boxes, detections.colors)
    )


def test_background_model_is_the_per_pixel_mode():
    frames = np.zeros((5, 2, 2, 3), np.uint8)
    frames[:3, 0, 0] = RED
    frames[4, 1, 1] = GREEN
    model = background_model(frames)
    assert model[0, 0] == pack_colors(np.array(RED, np.uint8)) and model[1, 1] == 0 and model[0, 1] == 0


def test_finds_exact_boxes_of_moving_and_static_objects():
    frame = blank()
    frame[40:45, 5:10] = GREEN
    frame[20:23, 30:33] = WALL  # the ball, same colour as the wall
    frame[10:12, 15:25] = RED  # an uncatalogued moving object
    frame[14, 15:25] = RED  # a 1-pixel gap below it: still the same sprite
    assert boxes_of(fitted()(frame)) == [
        ((5, 40, 10, 45), GREEN),
        ((15, 10, 25, 15), RED),
        ((30, 20, 33, 23), WALL),
    ]


def test_static_background_and_empty_frames_give_no_objects():
    segmenter = fitted()
    empty = blank()
    assert len(segmenter(empty)) == 0  # the wall is static background, the shield is gone


def test_same_colour_objects_apart_are_separate():
    frame = blank()
    frame[20:22, 5:7] = RED
    frame[20:22, 20:22] = RED
    detections = fitted()(frame)
    assert len(detections) == 2
    np.testing.assert_array_equal(detections.areas, [4, 4])


def test_real_pong_frame_finds_paddles_and_ball():
    from insight_cli.envs import make_frame_source
    from insight_cli.segment.naming import match_object

    game = get_game("Pong")
    source = make_frame_source(game, seed=0)
    frames = [source.reset().rgb]
    rng = np.random.default_rng(0)
    for _ in range(300):
        frames.append(source.step(int(rng.integers(6)))[0].rgb)
    segmenter = ClassicSegmenter(game).fit(np.stack(frames[::3]))
    seen = set()
    for frame in frames:
        detections = segmenter(frame)
        for box, color in zip(detections.boxes, detections.colors):
            spec = match_object(game, tuple(box), tuple(color), frame.shape)
            if spec:
                seen.add(spec.name)
    assert {"player", "enemy", "ball"} <= seen


def test_detections_from_masks_drops_empty_and_huge_masks():
    rgb = np.zeros((10, 10, 3), np.uint8)
    rgb[2:4, 3:6] = RED
    masks = np.zeros((3, 10, 10), bool)
    masks[0, 2:4, 3:6] = True
    masks[2] = True  # the whole frame: background, not an object
    detections = detections_from_masks(rgb, masks)
    assert boxes_of(detections) == [((3, 2, 6, 4), RED)]
    assert detections.areas.tolist() == [6]


def test_segmenter_needs_fitting():
    with pytest.raises(RuntimeError, match="fit"):
        ClassicSegmenter(TOY)(blank())


def test_colour_keys_round_trip():
    colors = np.array([[0, 0, 0], [255, 1, 2], [92, 186, 92]], np.uint8)
    keys = pack_colors(colors)
    assert len(set(keys.tolist())) == 3
    assert [unpack_color(int(key)) for key in keys] == [tuple(c) for c in colors.tolist()]
