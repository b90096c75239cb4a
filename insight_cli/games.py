"""The game catalogue: which games insight knows, what the player does in them, what the
actions mean and which objects a player would point at.

Every stage that needs to know about a game (environments, segment naming, explain prompts)
reads it from here and nowhere else.

Coordinates in object specs are fractions of the full frame (x right, y down, in [0, 1]);
colours are RGB of the full-resolution frame (210x160 for Atari).
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from functools import cache

from insight_cli.errors import InsightError

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class ObjectSpec:
    """A named object and how to recognise it on the full-resolution frame."""

    name: str  # variable stem in the symbolic policy: x_<name>_<frame>
    description: str
    colors: tuple[RGB, ...]  # sprite colours; any one of them identifies the object
    region: tuple[float, float, float, float] = (0.0, 0.0, 1.0, 1.0)  # x0, y0, x1, y1 where it can appear
    size: tuple[tuple[int, int], tuple[int, int]] = ((1, 1), (210, 160))  # (min h, min w), (max h, max w) px
    max_count: int = 1  # how many can be on screen at once


@dataclass(frozen=True)
class GameSpec:
    name: str  # display name, e.g. "Pong"
    task: str  # what the player controls and what the goal is
    actions: dict[str, str]  # ALE action meaning -> what it does in this game, in ALE order
    objects: tuple[ObjectSpec, ...] = ()
    ale_id: str | None = None  # ALE ROM id ("pong"); None for built-in games
    background: tuple[RGB, ...] = ()  # colours that are never objects (playfield, walls)
    paper: bool = False  # one of the nine games of the INSIGHT paper
    notes: dict[str, str] = field(default_factory=dict)

    @property
    def action_names(self) -> list[str]:
        return list(self.actions)

    @property
    def builtin(self) -> bool:
        return self.ale_id is None


_PONG = GameSpec(
    name="Pong",
    ale_id="pong",
    paper=True,
    task=(
        "You control the green paddle on the right side of the screen and play table tennis "
        "against the computer, which controls the orange paddle on the left. Hit the ball back "
        "past the opponent's paddle to score a point; a game is won by the first side to reach "
        "21 points."
    ),
    actions={
        "NOOP": "do nothing; the paddle keeps still",
        "FIRE": "serve the ball (otherwise does nothing)",
        "RIGHT": "move the paddle up",
        "LEFT": "move the paddle down",
        "RIGHTFIRE": "move the paddle up (and serve)",
        "LEFTFIRE": "move the paddle down (and serve)",
    },
    background=((144, 72, 17), (236, 236, 236)),
    objects=(
        ObjectSpec(
            "player",
            "the agent's green paddle on the right",
            colors=((92, 186, 92),),
            region=(0.5, 0.15, 1.0, 0.95),
            size=((2, 4), (16, 4)),
        ),
        ObjectSpec(
            "enemy",
            "the opponent's orange paddle on the left",
            colors=((213, 130, 74),),
            region=(0.0, 0.15, 0.5, 0.95),
            size=((2, 4), (16, 4)),
        ),
        ObjectSpec(
            "ball",
            "the small white ball",
            colors=((236, 236, 236),),
            region=(0.0, 0.15, 1.0, 0.95),
            size=((1, 1), (4, 2)),
        ),
        ObjectSpec(
            "score_enemy",
            "the opponent's score at the top left",
            colors=((213, 130, 74),),
            region=(0.0, 0.0, 0.5, 0.15),
        ),
        ObjectSpec(
            "score_player",
            "the agent's score at the top right",
            colors=((92, 186, 92),),
            region=(0.5, 0.0, 1.0, 0.15),
        ),
    ),
)

CATCH = GameSpec(
    name="Catch",
    task=(
        "A built-in small game: a ball falls from the top of an 84x84 screen and you move the "
        "paddle along the bottom row to catch it. Catching the ball scores +1, missing it -1; "
        "an episode is a fixed number of balls. The optimal policy moves the paddle toward the "
        "ball's x position."
    ),
    actions={
        "NOOP": "keep the paddle still",
        "RIGHT": "move the paddle right",
        "LEFT": "move the paddle left",
    },
    background=((0, 0, 0),),
    objects=(
        ObjectSpec(
            "paddle", "the white paddle on the bottom row", colors=((236, 236, 236),), region=(0, 0.85, 1, 1)
        ),
        ObjectSpec("ball", "the falling red ball", colors=((200, 72, 72),)),
    ),
)

PAPER_GAMES: tuple[GameSpec, ...] = (_PONG,)

_BUILTIN = {CATCH.name: CATCH}
_PAPER = {game.name: game for game in PAPER_GAMES}


def _camel(ale_id: str) -> str:
    """ALE ROM id to display name: 'space_invaders' -> 'SpaceInvaders'."""
    return "".join(part.capitalize() for part in ale_id.split("_"))


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@cache
def _ale_ids() -> tuple[str, ...]:
    from ale_py import roms

    return tuple(roms.get_all_rom_ids())


def known_game_names() -> list[str]:
    """Built-in games, then the paper's nine, then every other ALE game."""
    names = list(_BUILTIN) + list(_PAPER)
    names += sorted(_camel(ale_id) for ale_id in _ale_ids() if _camel(ale_id) not in names)
    return names


def _normalise(name: str) -> str:
    name = name.strip()
    name = re.sub(r"^ALE/|-v\d+$|NoFrameskip-v\d+$", "", name)
    return name.replace("_", "").replace("-", "").replace(" ", "").lower()


def get_game(name: str) -> GameSpec:
    """Resolve a game by display name ('Pong'), ROM id ('pong', 'ms_pacman') or gym id
    ('ALE/Pong-v5', 'PongNoFrameskip-v4'). Unknown names raise with close matches."""
    wanted = _normalise(name)
    for game in (*_BUILTIN.values(), *_PAPER.values()):
        if _normalise(game.name) == wanted:
            return game
    for ale_id in _ale_ids():
        if ale_id.replace("_", "") == wanted:
            return _generic_ale_game(ale_id)
    names = known_game_names()
    by_key = {_normalise(n): n for n in names}
    close = [by_key[key] for key in difflib.get_close_matches(wanted, list(by_key), n=3, cutoff=0.6)]
    hint = f"did you mean {', '.join(close)}?" if close else "run `insight games` for the list"
    raise InsightError(f"unknown game {name!r}", hint=hint)


@cache
def _generic_ale_game(ale_id: str) -> GameSpec:
    """Any ALE game without a catalogue entry: action meanings from the ROM, no named objects."""
    return GameSpec(
        name=_camel(ale_id),
        ale_id=ale_id,
        task=f"The Atari 2600 game {_camel(ale_id)}.",
        actions={meaning: meaning.lower() for meaning in ale_action_meanings(ale_id)},
    )


@cache
def ale_action_meanings(ale_id: str) -> tuple[str, ...]:
    """The minimal action set of an ALE game, as the ROM defines it."""
    from ale_py import Action, ALEInterface, LoggerMode, roms

    ALEInterface.setLoggerMode(LoggerMode.Error)
    ale = ALEInterface()
    ale.loadROM(roms.get_rom_path(ale_id))
    return tuple(Action(action).name for action in ale.getMinimalActionSet())
