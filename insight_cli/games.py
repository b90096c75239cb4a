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

import numpy as np

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
    continuous: bool = False  # each entry of `actions` is a number in [-1, 1] set every step (MetaDrive)
    state: dict[str, str] = field(default_factory=dict)  # ego state values next to the pixels: name -> meaning
    # Actions that do what another one does in this game: action -> the action it stands for.
    # Each pair is measured on the emulator (tests/test_games.py): the same RAM five steps on in
    # nearly every state of random play, and checked in play where random states are rare (Pong).
    same_effect: dict[str, str] = field(default_factory=dict)

    @property
    def action_names(self) -> list[str]:
        return list(self.actions)

    @property
    def effects(self) -> np.ndarray:
        """(A,) for each action the index of the action whose effect it has (its own, unless
        `same_effect` names another): fidelity counts FIRE for NOOP in Pong as the same decision."""
        names = self.action_names
        return np.array([names.index(self.same_effect.get(name, name)) for name in names], dtype=np.int64)

    @property
    def builtin(self) -> bool:
        return self.ale_id is None and not self.continuous


# The discs beside Qbert's pyramid cycle through nearly the whole palette; these are the
# colours measured on them (those of other Qbert objects left out).
_QBERT_DISC_COLORS: tuple[RGB, ...] = (
    (0, 0, 148),
    (0, 28, 136),
    (0, 48, 100),
    (0, 64, 48),
    (0, 68, 0),
    (20, 0, 144),
    (20, 60, 0),
    (24, 26, 167),
    (24, 59, 157),
    (24, 80, 128),
    (24, 98, 78),
    (26, 102, 26),
    (45, 50, 184),
    (45, 109, 152),
    (45, 129, 105),
    (48, 56, 0),
    (51, 26, 163),
    (53, 95, 24),
    (66, 72, 200),
    (66, 114, 194),
    (66, 136, 176),
    (66, 158, 130),
    (72, 72, 0),
    (72, 160, 72),
    (74, 74, 74),
    (78, 50, 181),
    (80, 0, 132),
    (80, 89, 22),
    (82, 126, 45),
    (84, 92, 214),
    (84, 138, 210),
    (84, 160, 197),
    (92, 186, 92),
    (101, 111, 228),
    (101, 160, 225),
    (101, 183, 217),
    (101, 209, 174),
    (104, 25, 154),
    (104, 72, 198),
    (105, 105, 15),
    (109, 118, 43),
    (110, 156, 66),
    (111, 111, 111),
    (111, 210, 111),
    (117, 128, 240),
    (117, 181, 239),
    (117, 204, 235),
    (117, 231, 194),
    (124, 44, 0),
    (125, 48, 173),
    (127, 92, 213),
    (128, 232, 128),
    (132, 0, 100),
    (132, 144, 252),
    (132, 200, 252),
    (132, 224, 252),
    (132, 252, 212),
    (134, 134, 29),
    (135, 183, 84),
    (136, 146, 62),
    (142, 142, 142),
    (144, 28, 0),
    (144, 72, 17),
    (144, 252, 144),
    (148, 0, 0),
    (149, 111, 227),
    (151, 25, 122),
    (158, 208, 101),
    (160, 171, 79),
    (162, 98, 33),
    (162, 162, 42),
    (163, 57, 21),
    (164, 89, 208),
    (167, 26, 26),
    (168, 48, 143),
    (169, 128, 240),
    (170, 170, 170),
    (180, 122, 48),
    (180, 231, 117),
    (181, 108, 224),
    (183, 194, 95),
    (184, 50, 50),
    (184, 70, 162),
    (187, 187, 53),
    (188, 144, 252),
    (192, 192, 192),
    (195, 144, 61),
    (197, 124, 238),
    (198, 89, 179),
    (198, 108, 58),
    (200, 72, 72),
    (200, 252, 132),
    (210, 164, 74),
    (212, 108, 195),
    (212, 140, 252),
    (213, 130, 74),
    (214, 92, 92),
    (214, 214, 214),
    (223, 183, 85),
    (224, 124, 210),
    (227, 151, 89),
    (228, 111, 111),
    (232, 232, 74),
    (236, 140, 224),
    (236, 200, 96),
    (236, 236, 236),
    (240, 128, 128),
    (240, 170, 103),
    (252, 144, 144),
    (252, 188, 116),
    (252, 252, 84),
)

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
    # Not RIGHTFIRE for RIGHT nor LEFTFIRE for LEFT: they leave the same RAM in 99.5% of random-play
    # states, but not where the paddle meets the ball. Run 15's neural actor won 65% of its points
    # with its own choices, 27% with those two replaced by RIGHT and LEFT, 62% with FIRE replaced
    # by NOOP (sticky evaluation, 8 envs x 5,000 steps; docs/design.md section 9).
    same_effect={"FIRE": "NOOP"},
    background=((144, 72, 17),),
    objects=(
        ObjectSpec(
            "player",
            "the agent's green paddle on the right",
            colors=((92, 186, 92),),
            region=(0.5, 0.16, 1.0, 0.92),
            size=((2, 4), (16, 4)),
        ),
        ObjectSpec(
            "enemy",
            "the opponent's orange paddle on the left",
            colors=((213, 130, 74),),
            region=(0.0, 0.16, 0.5, 0.92),
            size=((2, 4), (16, 4)),
        ),
        ObjectSpec(
            "ball",
            "the small white ball",
            colors=((236, 236, 236),),
            region=(0.0, 0.16, 1.0, 0.92),
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
    # ball: the white top and bottom walls (y 24-33 and 194-209) share the ball's colour; the ball's region
    # leaves them out
)

_BEAMRIDER = GameSpec(
    name="BeamRider",
    ale_id="beam_rider",
    paper=True,
    task=(
        "You pilot the yellow ship at the bottom of a grid of blue beams and can only stop on "
        "the five beams. White enemy saucers come down the beams; shoot them with the laser "
        "(FIRE) or the limited torpedoes (UP) for points while dodging their shots and debris. "
        "Destroying the 15 saucers of a sector ends it; being hit costs a life."
    ),
    actions={
        "NOOP": "do nothing; the ship stays on its beam",
        "FIRE": "shoot a laser lariat up the current beam",
        "UP": "launch a torpedo (three per sector) up the current beam",
        "RIGHT": "move the ship one beam to the right",
        "LEFT": "move the ship one beam to the left",
        "UPRIGHT": "launch a torpedo and move right",
        "UPLEFT": "launch a torpedo and move left",
        "RIGHTFIRE": "move right and shoot the laser",
        "LEFTFIRE": "move left and shoot the laser",
    },
    background=((0, 0, 0), (45, 109, 152)),
    objects=(
        ObjectSpec(
            "player",
            "the agent's yellow ship at the bottom of the beams",
            colors=((210, 210, 64),),
            region=(0.0, 0.78, 1.0, 0.86),
            size=((10, 12), (13, 15)),
        ),
        ObjectSpec(
            "saucer",
            "white enemy saucers travelling along the beams (grey specks near the horizon)",
            colors=((236, 236, 236), (170, 170, 170)),
            region=(0.05, 0.2, 1.0, 0.85),
            size=((1, 1), (8, 8)),
            max_count=7,
        ),
        ObjectSpec(
            "laser",
            "the agent's orange laser lariat flying up a beam",
            colors=((198, 108, 58),),
            region=(0.05, 0.2, 1.0, 0.8),
            size=((5, 8), (5, 8)),
        ),
        ObjectSpec(
            "torpedo",
            "the agent's purple torpedo, shrinking as it flies up a beam",
            colors=((164, 89, 208),),
            region=(0.05, 0.2, 1.0, 0.78),
            size=((1, 1), (4, 4)),
        ),
        ObjectSpec(
            "enemy_shot",
            "a spinning magenta projectile coming down a beam at the agent",
            colors=((184, 70, 162),),
            region=(0.05, 0.2, 1.0, 0.8),
            size=((2, 2), (6, 2)),
            max_count=2,
        ),
        ObjectSpec(
            "torpedoes_left",
            "purple bars at the top right, one per torpedo left",
            colors=((104, 25, 154),),
            region=(0.75, 0.14, 0.95, 0.2),
            size=((8, 4), (8, 4)),
            max_count=3,
        ),
        ObjectSpec(
            "enemies_left",
            "green counter at the top left of saucers still to destroy in the sector",
            colors=((82, 126, 45),),
            region=(0.1, 0.14, 0.22, 0.2),
        ),
        ObjectSpec(
            "score",
            "the score and sector number at the top",
            colors=((210, 164, 74),),
            region=(0.35, 0.04, 0.7, 0.14),
        ),
        ObjectSpec(
            "lives",
            "small yellow ships under the player, one per spare life",
            colors=((210, 210, 64),),
            region=(0.0, 0.86, 1.0, 0.92),
            size=((7, 5), (7, 5)),
            max_count=6,
        ),
    ),
    # colours: measured in sector 1; other enemy kinds of later sectors are not covered
    # torpedo: the ship's tip (3x5 at y 164) cycles through many colours, including the torpedo's
    # enemy_shot: alternates with a 2x4 sprite in the torpedo's colour (164, 89, 208)
)

_ENDURO = GameSpec(
    name="Enduro",
    ale_id="enduro",
    paper=True,
    task=(
        "You drive the white race car at the bottom of the road in a long-distance race. "
        "Accelerate and steer to overtake the other cars without touching them; each day you "
        "must pass a set number of cars (shown on the dashboard) to keep racing. Every car "
        "passed earns reward, and being passed again takes it back."
    ),
    actions={
        "NOOP": "do nothing; the car coasts and slows down",
        "FIRE": "accelerate",
        "RIGHT": "steer right",
        "LEFT": "steer left",
        "DOWN": "brake",
        "DOWNRIGHT": "brake and steer right",
        "DOWNLEFT": "brake and steer left",
        "RIGHTFIRE": "accelerate and steer right",
        "LEFTFIRE": "accelerate and steer left",
    },
    background=(
        (0, 0, 0),
        (0, 68, 0),
        (45, 50, 184),
        (24, 26, 167),
        (134, 134, 29),
        (136, 146, 62),
        (74, 74, 74),
        (111, 111, 111),
        (142, 142, 142),
        (170, 170, 170),
        (167, 26, 26),
        (214, 214, 214),
    ),
    objects=(
        ObjectSpec(
            "player",
            "the agent's white race car near the bottom of the road",
            colors=((192, 192, 192),),
            region=(0.0, 0.68, 1.0, 0.74),
            size=((11, 16), (11, 16)),
        ),
        ObjectSpec(
            "car",
            "other race cars, small near the horizon and larger as they come close",
            colors=(
                (110, 156, 66),
                (66, 114, 194),
                (162, 162, 42),
                (66, 158, 130),
                (162, 134, 56),
                (198, 108, 58),
                (184, 70, 162),
            ),
            region=(0.0, 0.3, 1.0, 0.74),
            size=((1, 2), (11, 16)),
            max_count=6,
        ),
        ObjectSpec(
            "dashboard",
            "the odometer, day number and cars still to pass on the red panel",
            colors=((195, 144, 61),),
            region=(0.3, 0.77, 0.7, 0.91),
        ),
    ),
    # colours: measured on the first (daytime) stretch; at night, in snow and fog the scenery and car colours
    # change (at night only tail lights show)
    # player: the nearest road-edge segments share the player's grey (192, 192, 192) but are larger than 11x16
)

_QBERT = GameSpec(
    name="Qbert",
    ale_id="qbert",
    paper=True,
    task=(
        "You control Qbert, the orange creature hopping diagonally on a pyramid of cubes. Each "
        "landing changes a cube's top to the target colour and scores points; turning every cube "
        "finishes the round. Avoid the bouncing balls and the purple snake Coily, don't jump off "
        "the pyramid except onto a spinning disc, and catch the green creatures for a bonus."
    ),
    actions={
        "NOOP": "do nothing; Qbert stays on his cube",
        "FIRE": "do nothing (no effect in this game)",
        "UP": "jump up and to the right",
        "RIGHT": "jump down and to the right",
        "LEFT": "jump up and to the left",
        "DOWN": "jump down and to the left",
    },
    background=((0, 0, 0), (84, 184, 153)),
    objects=(
        ObjectSpec(
            "qbert",
            "the agent's orange hopping creature",
            colors=((181, 83, 40),),
            region=(0.05, 0.04, 0.95, 1.0),
            size=((12, 6), (20, 8)),
        ),
        ObjectSpec(
            "cube",
            "the top face of a pyramid cube: blue not yet changed, yellow changed",
            colors=((45, 87, 176), (210, 210, 64)),
            region=(0.05, 0.15, 0.95, 0.88),
            size=((4, 18), (5, 20)),
            max_count=21,
        ),
        ObjectSpec(
            "purple_ball",
            "the purple ball that bounces down the pyramid and hatches into Coily",
            colors=((146, 70, 192),),
            region=(0.05, 0.15, 0.95, 0.88),
            size=((5, 5), (10, 8)),
        ),
        ObjectSpec(
            "coily",
            "the purple snake that chases Qbert",
            colors=((146, 70, 192),),
            region=(0.05, 0.15, 0.95, 0.88),
            size=((15, 7), (22, 8)),
        ),
        ObjectSpec(
            "sam",
            "the green creature (Sam/Slick) that undoes changed cubes; catching it scores",
            colors=((50, 132, 50),),
            region=(0.05, 0.15, 0.95, 0.88),
            size=((15, 6), (19, 8)),
        ),
        ObjectSpec(
            "disc",
            "a flashing disc beside the pyramid that carries Qbert back to the top",
            colors=_QBERT_DISC_COLORS,
            region=(0.05, 0.64, 0.95, 0.68),
            size=((2, 8), (2, 8)),
            max_count=2,
        ),
        ObjectSpec(
            "score",
            "the score at the top",
            colors=((210, 210, 64),),
            region=(0.15, 0.0, 0.5, 0.07),
        ),
        ObjectSpec(
            "lives",
            "small Qbert icons under the score, one per spare life",
            colors=((210, 210, 64),),
            region=(0.15, 0.07, 0.4, 0.14),
            max_count=4,
        ),
    ),
    # colours: measured on the first level; later levels use other cube colours
    # disc: the discs cycle through almost the whole palette; identify them by place and shape
    # red_ball: red balls were not seen in the frames measured, so they have no entry
    # curse: a (252, 224, 112) speech bubble shows when Qbert is caught; it is not listed
)

_SPACEINVADERS = GameSpec(
    name="SpaceInvaders",
    ale_id="space_invaders",
    paper=True,
    task=(
        "You move the green laser cannon along the bottom of the screen and shoot at the rows "
        "of aliens marching down toward you. Each alien hit scores points (more for higher "
        "rows, most for the UFO crossing the top); alien bullets cost a life, and the game ends "
        "when lives run out or the aliens reach the ground. Orange shields give cover."
    ),
    actions={
        "NOOP": "do nothing; the cannon stays put",
        "FIRE": "shoot a bullet straight up",
        "RIGHT": "move the cannon right",
        "LEFT": "move the cannon left",
        "RIGHTFIRE": "move right and shoot",
        "LEFTFIRE": "move left and shoot",
    },
    background=((0, 0, 0), (80, 89, 22)),
    objects=(
        ObjectSpec(
            "player",
            "the agent's green laser cannon at the bottom",
            colors=((50, 132, 50),),
            region=(0.0, 0.85, 1.0, 0.93),
            size=((10, 7), (10, 8)),
        ),
        ObjectSpec(
            "alien",
            "the marching aliens in a six-by-six block",
            colors=((134, 134, 29),),
            region=(0.0, 0.14, 1.0, 0.92),
            size=((5, 4), (10, 8)),
            max_count=36,
        ),
        ObjectSpec(
            "shield",
            "orange shields between the aliens and the cannon, worn away by hits",
            colors=((181, 83, 40),),
            region=(0.2, 0.74, 0.75, 0.84),
            size=((1, 1), (18, 8)),
            max_count=3,
        ),
        ObjectSpec(
            "bullet",
            "a thin grey bullet: the agent's flying up or an alien's flying down",
            colors=((142, 142, 142),),
            region=(0.0, 0.06, 1.0, 0.93),
            size=((1, 1), (11, 1)),
            max_count=3,
        ),
        ObjectSpec(
            "ufo",
            "the magenta mystery ship crossing the top",
            colors=((151, 25, 122),),
            region=(0.0, 0.05, 1.0, 0.1),
            size=((4, 1), (8, 7)),
        ),
        ObjectSpec(
            "score_player",
            "the agent's score at the top left",
            colors=((50, 132, 50),),
            region=(0.0, 0.04, 0.45, 0.1),
        ),
        ObjectSpec(
            "lives",
            "the number of lives left, shown on the ground",
            colors=((162, 134, 56),),
            region=(0.3, 0.86, 0.7, 0.93),
            size=((10, 12), (10, 12)),
        ),
    ),
    # bullet: the agent's and the aliens' bullets share one colour; tell them apart by direction
    # score: the right-hand score (second player) is (162, 134, 56) at the top right
    # shield: a worn shield can break into several pieces
    # ground: the small marks on the ground at y 196 are green/olive like the cannon and the lives counter; they
    # fall outside the objects' regions
)

_SEAQUEST = GameSpec(
    name="Seaquest",
    ale_id="seaquest",
    paper=True,
    task=(
        "You steer the yellow submarine under water and shoot sharks and enemy submarines for "
        "points while rescuing divers. Oxygen runs down under water: surface before it runs "
        "out, ideally with six divers aboard for a big bonus. Surfacing with no diver, running "
        "out of oxygen or touching an enemy or its torpedo costs a life."
    ),
    actions={
        "NOOP": "do nothing; the submarine holds its place",
        "FIRE": "fire a torpedo in the direction the submarine faces",
        "UP": "move up (toward the surface)",
        "RIGHT": "move right",
        "LEFT": "move left",
        "DOWN": "move down",
        "UPRIGHT": "move up and right",
        "UPLEFT": "move up and left",
        "DOWNRIGHT": "move down and right",
        "DOWNLEFT": "move down and left",
        "UPFIRE": "move up and fire",
        "RIGHTFIRE": "move right and fire",
        "LEFTFIRE": "move left and fire",
        "DOWNFIRE": "move down and fire",
        "UPRIGHTFIRE": "move up and right and fire",
        "UPLEFTFIRE": "move up and left and fire",
        "DOWNRIGHTFIRE": "move down and right and fire",
        "DOWNLEFTFIRE": "move down and left and fire",
    },
    background=(
        (0, 0, 0),
        (0, 28, 136),
        (24, 59, 157),
        (45, 50, 184),
        (0, 48, 100),
        (0, 64, 48),
        (0, 68, 0),
        (78, 50, 181),
        (125, 48, 173),
        (168, 48, 143),
        (184, 50, 50),
        (181, 83, 40),
        (162, 98, 33),
        (134, 134, 29),
        (142, 142, 142),
    ),
    objects=(
        ObjectSpec(
            "player",
            "the agent's yellow submarine",
            colors=((187, 187, 53),),
            region=(0.05, 0.21, 1.0, 0.69),
            size=((7, 16), (11, 16)),
        ),
        ObjectSpec(
            "player_torpedo",
            "the agent's yellow torpedo streak",
            colors=((187, 187, 53),),
            region=(0.05, 0.21, 1.0, 0.69),
            size=((1, 2), (1, 8)),
        ),
        ObjectSpec(
            "shark",
            "sharks swimming across in lanes",
            colors=((92, 186, 92), (160, 171, 79)),
            region=(0.05, 0.3, 1.0, 0.72),
            size=((6, 3), (7, 8)),
            max_count=12,
        ),
        ObjectSpec(
            "enemy_sub",
            "grey enemy submarines crossing in lanes",
            colors=((170, 170, 170),),
            region=(0.05, 0.3, 1.0, 0.72),
            size=((10, 5), (11, 8)),
            max_count=12,
        ),
        ObjectSpec(
            "enemy_torpedo",
            "the short blue dash an enemy submarine fires",
            colors=((66, 72, 200),),
            region=(0.05, 0.3, 1.0, 0.72),
            size=((1, 2), (1, 4)),
            max_count=4,
        ),
        ObjectSpec(
            "diver",
            "blue divers to pick up",
            colors=((66, 72, 200),),
            region=(0.05, 0.3, 1.0, 0.72),
            size=((8, 8), (9, 8)),
            max_count=4,
        ),
        ObjectSpec(
            "oxygen_bar",
            "the white oxygen bar at the bottom; it shrinks under water",
            colors=((214, 214, 214),),
            region=(0.3, 0.8, 0.7, 0.84),
            size=((5, 1), (5, 64)),
        ),
        ObjectSpec(
            "divers_collected",
            "dark-blue diver icons under the oxygen bar, one per diver aboard",
            colors=((24, 26, 167),),
            region=(0.3, 0.84, 0.7, 0.9),
            size=((9, 8), (9, 8)),
            max_count=6,
        ),
        ObjectSpec(
            "score",
            "the score at the top",
            colors=((210, 210, 64),),
            region=(0.3, 0.03, 0.7, 0.09),
        ),
        ObjectSpec(
            "lives",
            "small yellow submarines under the score, one per spare life",
            colors=((210, 210, 64),),
            region=(0.3, 0.09, 0.7, 0.15),
            size=((8, 6), (8, 8)),
            max_count=6,
        ),
    ),
    # shark: shark colour changes from wave to wave; only the first waves' colours are listed
    # diver: divers and enemy torpedoes share (66, 72, 200); tell them apart by size
    # player_torpedo: shares the submarine's colour; tell them apart by size
    # oxygen_bar: the used-up part of the bar is (163, 57, 21)
    # surface_sub: the enemy patrol sub on the surface (later waves) was not measured
)

_BREAKOUT = GameSpec(
    name="Breakout",
    ale_id="breakout",
    paper=True,
    task=(
        "You move the red paddle along the bottom and bounce the ball up into six rows of "
        "coloured bricks. Every brick the ball breaks scores points (more for the higher rows); "
        "letting the ball fall past the paddle loses one of five lives. FIRE launches a new ball."
    ),
    actions={
        "NOOP": "do nothing; the paddle keeps still",
        "FIRE": "launch the ball (otherwise does nothing)",
        "RIGHT": "move the paddle right",
        "LEFT": "move the paddle left",
    },
    background=((0, 0, 0), (66, 158, 130)),
    objects=(
        ObjectSpec(
            "player",
            "the agent's red paddle at the bottom",
            colors=((200, 72, 72),),
            region=(0.05, 0.89, 1.0, 0.93),
            size=((4, 12), (6, 24)),
        ),
        ObjectSpec(
            "ball",
            "the small red ball",
            colors=((200, 72, 72),),
            region=(0.05, 0.08, 0.95, 0.95),
            size=((2, 1), (4, 2)),
        ),
        ObjectSpec(
            "brick_red",
            "red bricks in the top row",
            colors=((200, 72, 72),),
            region=(0.05, 0.26, 0.95, 0.31),
            size=((6, 8), (6, 144)),
            max_count=18,
        ),
        ObjectSpec(
            "brick_orange",
            "orange bricks in the second row",
            colors=((198, 108, 58),),
            region=(0.05, 0.29, 0.95, 0.34),
            size=((6, 8), (6, 144)),
            max_count=18,
        ),
        ObjectSpec(
            "brick_tan",
            "tan bricks in the third row",
            colors=((180, 122, 48),),
            region=(0.05, 0.32, 0.95, 0.37),
            size=((6, 8), (6, 144)),
            max_count=18,
        ),
        ObjectSpec(
            "brick_yellow",
            "yellow bricks in the fourth row",
            colors=((162, 162, 42),),
            region=(0.05, 0.35, 0.95, 0.4),
            size=((6, 8), (6, 144)),
            max_count=18,
        ),
        ObjectSpec(
            "brick_green",
            "green bricks in the fifth row",
            colors=((72, 160, 72),),
            region=(0.05, 0.38, 0.95, 0.42),
            size=((6, 8), (6, 144)),
            max_count=18,
        ),
        ObjectSpec(
            "brick_blue",
            "blue bricks in the bottom row",
            colors=((66, 72, 200),),
            region=(0.05, 0.41, 0.95, 0.45),
            size=((6, 8), (6, 144)),
            max_count=18,
        ),
        ObjectSpec(
            "score",
            "the score, lives and player number in grey at the top",
            colors=((142, 142, 142),),
            region=(0.2, 0.02, 0.9, 0.08),
        ),
    ),
    # bricks: adjacent bricks of one row merge into one blob (each brick is 6x8)
    # player: a fixed red 6x8 block sits in the bottom-right corner (x 152-159, y 189-194); it merges with the
    # paddle at the right wall
    # walls: the grey walls share the score colour (142, 142, 142), so it is not in background
)

_FREEWAY = GameSpec(
    name="Freeway",
    ale_id="freeway",
    paper=True,
    task=(
        "You guide the yellow chicken on the left across ten lanes of traffic from the bottom "
        "to the top of the screen. Each crossing scores one point; a car hit knocks the chicken "
        "back down a lane. The game lasts a fixed time (about two minutes), so the goal is as "
        "many crossings as possible."
    ),
    actions={
        "NOOP": "do nothing; the chicken stands still",
        "UP": "walk up, toward the far side",
        "DOWN": "walk down, back toward the start",
    },
    background=((0, 0, 0), (142, 142, 142), (170, 170, 170), (214, 214, 214)),
    objects=(
        ObjectSpec(
            "chicken",
            "the agent's yellow chicken in the left column",
            colors=((252, 252, 84),),
            region=(0.25, 0.1, 0.35, 0.93),
            size=((5, 5), (8, 7)),
        ),
        ObjectSpec(
            "other_chicken",
            "the second (idle) chicken in the right column",
            colors=((252, 252, 84),),
            region=(0.63, 0.1, 0.73, 0.93),
            size=((5, 5), (8, 7)),
        ),
        ObjectSpec(
            "car",
            "cars driving along the ten lanes, one colour per lane",
            colors=(
                (167, 26, 26),
                (180, 231, 117),
                (105, 105, 15),
                (228, 111, 111),
                (24, 26, 167),
                (162, 98, 33),
                (84, 92, 214),
                (184, 50, 50),
                (135, 183, 84),
                (210, 210, 64),
            ),
            region=(0.0, 0.13, 1.0, 0.86),
            size=((8, 1), (8, 8)),
            max_count=10,
        ),
        ObjectSpec(
            "score_player",
            "the agent's score at the top left",
            colors=((228, 111, 111),),
            region=(0.2, 0.0, 0.5, 0.07),
        ),
        ObjectSpec(
            "score_enemy",
            "the other chicken's score at the top right",
            colors=((228, 111, 111),),
            region=(0.6, 0.0, 0.9, 0.07),
        ),
    ),
    # lanes: cars by lane from the top (y px): 28 (167,26,26), 44 (180,231,117), 60 (105,105,15), 76
    # (228,111,111), 92 (24,26,167), 108 (162,98,33), 124 (84,92,214), 140 (184,50,50), 156 (135,183,84), 172
    # (210,210,64)
    # chicken: the yellow centre-line dashes (1x4 at y 102) share the chicken's colour
    # car: the fourth lane's car shares the score colour (228, 111, 111)
)

_MSPACMAN = GameSpec(
    name="MsPacman",
    ale_id="ms_pacman",
    paper=True,
    task=(
        "You steer Ms. Pac-Man through the maze eating the pellets for points while four ghosts "
        "chase her; eating every pellet clears the maze. A power pellet turns the ghosts blue "
        "for a short time so she can eat them for bonus points, and a bouncing fruit gives "
        "extra points. Touching a ghost that is not blue costs a life."
    ),
    actions={
        "NOOP": "do nothing; Ms. Pac-Man keeps going the way she faces",
        "UP": "go up",
        "RIGHT": "go right",
        "LEFT": "go left",
        "DOWN": "go down",
        "UPRIGHT": "go up or right, whichever the maze allows",
        "UPLEFT": "go up or left, whichever the maze allows",
        "DOWNRIGHT": "go down or right, whichever the maze allows",
        "DOWNLEFT": "go down or left, whichever the maze allows",
    },
    background=((0, 0, 0), (0, 28, 136)),
    objects=(
        ObjectSpec(
            "ms_pacman",
            "the agent's yellow Ms. Pac-Man",
            colors=((210, 164, 74),),
            region=(0.0, 0.0, 1.0, 0.82),
            size=((7, 6), (10, 8)),
        ),
        ObjectSpec(
            "ghost",
            "the four ghosts (red, pink, cyan, orange), blue or white while frightened",
            colors=(
                (200, 72, 72),
                (198, 89, 179),
                (84, 184, 153),
                (180, 122, 48),
                (66, 114, 194),
                (214, 214, 214),
            ),
            region=(0.0, 0.0, 1.0, 0.82),
            size=((7, 7), (10, 8)),
            max_count=4,
        ),
        ObjectSpec(
            "pellet",
            "the small pellets along the corridors",
            colors=((228, 111, 111),),
            region=(0.0, 0.0, 1.0, 0.82),
            size=((2, 4), (2, 4)),
            max_count=160,
        ),
        ObjectSpec(
            "power_pellet",
            "the four large blinking pellets near the corners",
            colors=((228, 111, 111),),
            region=(0.0, 0.0, 1.0, 0.82),
            size=((7, 4), (7, 4)),
            max_count=4,
        ),
        ObjectSpec(
            "fruit",
            "the bonus fruit bouncing through the maze (a cherry in the first maze)",
            colors=((184, 50, 50),),
            region=(0.0, 0.0, 1.0, 0.82),
            size=((5, 4), (10, 8)),
        ),
        ObjectSpec(
            "lives",
            "yellow Ms. Pac-Man icons at the bottom left, one per spare life",
            colors=((187, 187, 53),),
            region=(0.0, 0.82, 0.3, 0.88),
            size=((10, 7), (10, 7)),
            max_count=4,
        ),
        ObjectSpec(
            "score",
            "the score at the bottom",
            colors=((195, 144, 61),),
            region=(0.4, 0.88, 0.7, 0.93),
        ),
    ),
    # pellet: pellets and power pellets share the first maze's wall colour (228, 111, 111); tell them apart from
    # the walls by size. Later mazes change the wall colour
    # ghost: the ghosts flicker: each is drawn on about half of the frames
    # fruit: no fruit entered the maze in the frames measured; the colour is that of the cherry shown at the
    # bottom right (y 173-182), which is not an object here
)

CATCH = GameSpec(
    name="Catch",
    task=(
        "A built-in small game: a ball falls from the top of an 84x84 screen and you move the "
        "paddle along the bottom row to catch it. Catching the ball scores +1, missing it -1; "
        "an episode is 20 balls. The optimal policy moves the paddle toward the "
        "ball's x position."
    ),
    actions={
        "NOOP": "keep the paddle still",
        "RIGHT": "move the paddle right",
        "LEFT": "move the paddle left",
    },
    background=((0, 0, 0),),
    objects=(
        ObjectSpec("paddle", "the white paddle on the bottom row", colors=((236, 236, 236),), region=(0, 0.85, 1, 1)),
        ObjectSpec("ball", "the falling red ball", colors=((200, 72, 72),)),
    ),
)

# Vehicles are drawn in one colour; their boxes come from the simulator itself (segment's
# `simulator` backend), nearest first: vehicle1 is the nearest other car.
METADRIVE = GameSpec(
    name="MetaDrive",
    task=(
        "Driving in the MetaDrive simulator, seen from above with the ego car at the centre of "
        "the view and heading up (the view is 42 m x 42 m). Follow the road to the destination "
        "without leaving the road or hitting other vehicles; the reward is about 1 per metre of "
        "progress, +10 for reaching the destination and -5 for a crash or leaving the road."
    ),
    actions={
        "steering": "steer: -1 full right, +1 full left",
        "throttle": "throttle: +1 full throttle, -1 full brake",
    },
    continuous=True,
    objects=(
        ObjectSpec(
            "ego",
            "the car you drive, at the centre of the view",
            colors=((224, 177, 67),),
            region=(0.4, 0.35, 0.6, 0.65),
        ),
        ObjectSpec(
            "road_left",
            "the left edge of your side of the road, level with you (usually the centre line)",
            colors=((20, 20, 20),),
        ),
        ObjectSpec("road_right", "the right edge of the road, level with you", colors=((140, 140, 140),)),
        ObjectSpec("vehicle", "another car, nearest first", colors=((224, 177, 67),), max_count=32),
    ),
    # MetaDrive's state observation, in its order; every value is scaled to [0, 1]
    state={
        "ego_left_gap": "distance from the ego car to the left edge of the road (1 = the widest road)",
        "ego_right_gap": "distance from the ego car to the right edge of the road (1 = the widest road)",
        "ego_heading": "the ego car's heading against its lane (0.5 = along the lane)",
        "ego_speed": "the ego car's speed (1 = its top speed)",
        "ego_wheel": "the ego car's current steering angle (0.5 = straight, above it = left)",
        "ego_last_steering": "the steering action of the last step (0.5 = straight, above it = left)",
        "ego_last_throttle": "the throttle action of the last step (0.5 = none, above it = accelerating)",
        "ego_yaw_rate": "how fast the ego car is turning",
        "ego_lane_offset": "the ego car's sideways position in its lane (0.5 = centred)",
        **{
            f"nav{point}_{key}": f"the {'next' if point == 1 else 'second'} navigation checkpoint: {meaning}"
            for point in (1, 2)
            for key, meaning in (
                ("ahead", "how far ahead of the car it is (0.5 = level with the car)"),
                ("side", "how far to the right of the car it is (0.5 = straight ahead)"),
                ("radius", "the radius of the bend ending there (0 = straight)"),
                ("clockwise", "the direction of that bend (1 = clockwise, 0.5 = straight)"),
                ("angle", "the angle of that bend (0.5 = straight)"),
            )
        },
    },
)

PAPER_GAMES: tuple[GameSpec, ...] = (
    _PONG,
    _BEAMRIDER,
    _ENDURO,
    _QBERT,
    _SPACEINVADERS,
    _SEAQUEST,
    _BREAKOUT,
    _FREEWAY,
    _MSPACMAN,
)

_BUILTIN = {CATCH.name: CATCH, METADRIVE.name: METADRIVE}
_PAPER = {game.name: game for game in PAPER_GAMES}
STATE_VALUES = tuple(dict.fromkeys(name for game in (*_BUILTIN.values(), *PAPER_GAMES) for name in game.state))


def _camel(ale_id: str) -> str:
    """ALE ROM id to display name: 'space_invaders' -> 'SpaceInvaders'."""
    return "".join(part.capitalize() for part in ale_id.split("_"))


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
