import keyword

import numpy as np
import pytest

from insight_cli.errors import InsightError
from insight_cli.games import PAPER_GAMES, ale_action_meanings, get_game, known_game_names

NINE = ["Pong", "BeamRider", "Enduro", "Qbert", "SpaceInvaders", "Seaquest", "Breakout", "Freeway", "MsPacman"]


def test_catalogue_covers_the_nine_paper_games():
    assert [game.name for game in PAPER_GAMES] == NINE
    assert all(game.paper and not game.builtin for game in PAPER_GAMES)


@pytest.mark.parametrize("game", PAPER_GAMES, ids=lambda game: game.name)
def test_catalogued_actions_are_the_real_action_set(game):
    assert list(game.actions) == list(ale_action_meanings(game.ale_id))
    assert all(len(effect) > 3 for effect in game.actions.values())


@pytest.mark.parametrize("game", [*PAPER_GAMES, get_game("Catch")], ids=lambda game: game.name)
def test_catalogued_objects_are_usable(game):
    assert len(game.task) > 80
    assert len(game.objects) >= 2
    names = [obj.name for obj in game.objects]
    assert len(set(names)) == len(names)
    for obj in game.objects:
        assert obj.name.isidentifier() and obj.name.islower() and not keyword.iskeyword(obj.name)
        assert obj.colors and all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in obj.colors)
        x0, y0, x1, y1 = obj.region
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1
        (min_h, min_w), (max_h, max_w) = obj.size
        assert 1 <= min_h <= max_h and 1 <= min_w <= max_w and obj.max_count >= 1


@pytest.mark.parametrize("alias", ["Pong", "pong", "PONG", "ALE/Pong-v5", "PongNoFrameskip-v4"])
def test_game_aliases_resolve(alias):
    assert get_game(alias).name == "Pong"


def test_any_ale_game_works_by_name():
    game = get_game("Asterix")
    assert game.ale_id == "asterix" and game.action_names == list(ale_action_meanings("asterix"))
    assert get_game("ms_pacman").name == "MsPacman"
    assert "Asterix" in known_game_names() and len(known_game_names()) > 100


def test_unknown_game_lists_close_matches():
    with pytest.raises(InsightError) as caught:
        get_game("Space Invader")
    assert "SpaceInvaders" in str(caught.value)
    with pytest.raises(InsightError, match="insight games"):
        get_game("zzzzzz")


def _ram_after(env, state, action: int, follow: int = 5):
    """The emulator's RAM after `action` and `follow` NOOPs from `state`."""
    env.unwrapped.ale.restoreState(state)
    env.step(action)
    for _ in range(follow):
        env.step(0)
    return env.unwrapped.ale.getRAM().copy()


@pytest.mark.parametrize("game", [game for game in PAPER_GAMES if game.same_effect], ids=lambda game: game.name)
def test_actions_with_the_same_effect_leave_the_emulator_in_the_same_state(game):
    import ale_py
    import gymnasium

    gymnasium.register_envs(ale_py)
    env = gymnasium.make(f"ALE/{game.name}-v5", repeat_action_probability=0.0)
    env.reset(seed=0)
    names, rng = game.action_names, np.random.default_rng(0)
    same, different, states = dict.fromkeys(game.same_effect, 0), 0, 200
    for _ in range(states):
        state = env.unwrapped.ale.cloneState()
        for alias, action in game.same_effect.items():
            same[alias] += np.array_equal(
                _ram_after(env, state, names.index(alias)), _ram_after(env, state, names.index(action))
            )
        # and actions that are not the same differ (else the comparison would prove nothing)
        first = names.index(next(iter(game.same_effect.values())))
        second = next(index for index, effect in enumerate(game.effects) if effect != game.effects[first])
        different += not np.array_equal(_ram_after(env, state, first), _ram_after(env, state, second))
        env.unwrapped.ale.restoreState(state)
        if any(env.step(int(rng.integers(len(names))))[2:4]):
            env.reset()
    env.close()
    assert all(count >= 0.98 * states for count in same.values()), same
    assert different >= 0.5 * states


def test_effects_map_each_action_to_the_one_it_stands_for():
    assert get_game("Pong").effects.tolist() == [0, 0, 2, 3, 4, 5]  # NOOP FIRE RIGHT LEFT RIGHTFIRE LEFTFIRE
    assert get_game("Breakout").effects.tolist() == [0, 1, 2, 3]  # FIRE launches the ball: no alias
