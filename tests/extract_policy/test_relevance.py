import numpy as np
import pytest
import torch
from support import toward_the_ball

from insight_cli.extract_policy.relevance import focus, fold, hold, motionless
from insight_cli.extract_policy.stage import eql_decisions
from insight_cli.extract_policy.symbolic import Interface, PruningSearch, variables_for

OBJECTS = ["ball", "paddle", "score", "bird"]
VARIABLES = variables_for(OBJECTS)
NAMES = [variable.name for variable in VARIABLES]


def states(count: int, seed: int = 0) -> np.ndarray:
    """(N, V) Catch-like states: the ball and a bird fly anywhere, the paddle slides along the
    bottom row, the score sits in a corner; at an episode's start the older frames are absent."""
    rng = np.random.default_rng(seed)
    coordinates = np.zeros((count, len(OBJECTS), 4, 2))
    coordinates[:, 0] = rng.random((count, 1, 2))
    coordinates[:, 1, :, 0], coordinates[:, 1, :, 1] = rng.random((count, 1)), 0.95
    coordinates[:, 2] = (0.2, 0.05)
    coordinates[:, 3] = rng.random((count, 1, 2))
    coordinates[: count // 10, :, :3] = 0.0  # absent: the first frames of an episode
    return coordinates.reshape(count, -1)


def decide(eql):
    return lambda inputs: eql_decisions(eql, inputs, continuous=False)


def test_what_never_moves_is_found_even_where_it_is_sometimes_absent():
    still = motionless(states(500), VARIABLES)
    assert {NAMES[index] for index in still} == {f"{axis}_score_{frame}" for axis in "xy" for frame in range(1, 5)} | {
        f"y_paddle_{frame}" for frame in range(1, 5)
    }
    assert still[NAMES.index("y_paddle_2")] == pytest.approx(0.95)  # its value where it is on screen, not 0
    assert still[NAMES.index("x_score_4")] == pytest.approx(0.2)


def test_objects_the_actor_ignores_and_hud_that_never_moves_are_left_out():
    eql = toward_the_ball(OBJECTS, noise=0.002)  # everything but x_ball_4 and x_paddle_4 is faint noise
    left_out = focus(decide(eql), states(800), VARIABLES, continuous=False)
    assert left_out.reasons["score"] == "never moves" and left_out.reasons["y_paddle_1..4"] == "never moves"
    assert left_out.reasons["bird"].startswith("ignored by the EQL actor")
    assert "ball" not in left_out.reasons and "paddle" not in left_out.reasons
    kept = {NAMES[index] for index in range(len(NAMES)) if index not in left_out.held}
    ball = {f"{axis}_ball_{frame}" for axis in "xy" for frame in range(1, 5)}
    assert kept == ball | {f"x_paddle_{frame}" for frame in range(1, 5)}


def test_an_object_the_actor_uses_is_kept():
    eql = toward_the_ball(OBJECTS, noise=0.002)
    with torch.no_grad():  # the bird's x now pushes RIGHT as hard as the ball's
        eql.layers[0].linear.weight[3 * eql.config.repeats + 2, NAMES.index("x_bird_4")] = 1.0
        eql.output.weight[1, 3 * eql.config.repeats + 2] = 1.0
    assert "bird" not in focus(decide(eql), states(800), VARIABLES, continuous=False).reasons


def test_a_folded_actor_is_the_actor_with_those_variables_held():
    torch.manual_seed(0)
    eql = toward_the_ball(OBJECTS, noise=0.3)
    held = {NAMES.index("x_bird_4"): 0.4, NAMES.index("y_score_1"): 0.05}
    inputs = hold(states(64), held)
    folded = fold(eql, held)
    with torch.no_grad():
        np.testing.assert_allclose(
            folded(torch.tensor(inputs, dtype=torch.float32)), eql(torch.tensor(inputs, dtype=torch.float32)), atol=1e-4
        )
        assert not folded.layers[0].linear.weight[:, list(held)].any()  # no term can mention them
        assert eql.layers[0].linear.weight[:, list(held)].all()  # the actor itself is untouched
    pruned = PruningSearch(folded, Interface(VARIABLES, ["NOOP", "RIGHT", "LEFT"]), digits=3, floor=0.01).fitting(10)
    assert not {NAMES[index] for index in held} & {variable.name for variable in pruned.used_variables}
