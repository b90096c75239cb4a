"""Names for tracked objects: the game catalogue's names, then `obj<id>`, then the user's
overrides from a small TOML file."""

from __future__ import annotations

import re
import tomllib
from collections import Counter
from pathlib import Path

from insight_cli.dataset import is_object_name
from insight_cli.errors import InsightError
from insight_cli.games import GameSpec, ObjectSpec


def match_object(
    game: GameSpec, box: tuple[int, int, int, int], color: tuple[int, int, int], frame_shape: tuple[int, int]
) -> ObjectSpec | None:
    """The first catalogued object whose colour, region and size fit a detection, else None.

    box is x0, y0, x1, y1 in pixels of a frame of frame_shape (H, W); colour is RGB.
    """
    height, width = frame_shape[:2]
    x0, y0, x1, y1 = box
    center_x, center_y = (x0 + x1) / 2 / width, (y0 + y1) / 2 / height
    box_height, box_width = y1 - y0, x1 - x0
    for obj in game.objects:
        if tuple(int(c) for c in color) not in obj.colors:
            continue
        region_x0, region_y0, region_x1, region_y1 = obj.region
        if not (region_x0 <= center_x <= region_x1 and region_y0 <= center_y <= region_y1):
            continue
        (min_height, min_width), (max_height, max_width) = obj.size
        if min_height <= box_height <= max_height and min_width <= box_width <= max_width:
            return obj
    return None


def default_names(game: GameSpec) -> re.Pattern:
    """The names segment gives objects before overrides: a catalogued object that appears once
    (`ball`), numbered instances of the others (`alien1`), `obj<id>` for the uncatalogued."""
    singles = [re.escape(obj.name) for obj in game.objects if obj.max_count == 1]
    several = [re.escape(obj.name) for obj in game.objects if obj.max_count > 1]
    alternatives = ["obj\\d+", *singles] + ([f"(?:{'|'.join(several)})\\d+"] if several else [])
    return re.compile("|".join(alternatives))


def load_name_overrides(path: Path | None, game: GameSpec) -> dict[str, str]:
    """A TOML file mapping default names to the names wanted, e.g. `obj7 = "bullet"`.

    Keys may sit at the top level or under a [names] table and must be names segment gives
    (see default_names); values must be ASCII identifiers that no other object has.
    """
    if path is None:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InsightError(f"names file {path} does not exist") from None
    except IsADirectoryError:
        raise InsightError(f"names file {path} is a directory", hint="pass a TOML file such as names.toml") from None
    except OSError as error:
        raise InsightError(f"cannot read names file {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InsightError(f"names file {path} is not valid TOML: {error}") from None
    if isinstance(data.get("names"), dict):
        if len(data) > 1:
            raise InsightError(
                f"names file {path} has names both under [names] and outside it", hint="put them all under [names]"
            )
        data = data["names"]
    return _checked(data, game, f"names file {path}")


def _checked(overrides: dict, game: GameSpec, where: str) -> dict[str, str]:
    """The overrides, if every key is a name segment gives and every value a new, unique name."""
    defaults = default_names(game)
    for old, new in overrides.items():
        if not defaults.fullmatch(old):
            raise InsightError(
                f"{where}: {game.name} has no object named {old!r} to rename", hint=f"rename one of {_listed(game)}"
            )
        if not is_object_name(new):
            raise InsightError(
                f"{where}: {old} = {new!r} is not a valid name",
                hint="use ASCII letters, digits and _, not starting with a digit",
            )
        if defaults.fullmatch(new) and new not in overrides:
            raise InsightError(
                f"{where}: {old} = {new!r} is the name of another object", hint="choose a name no other object has"
            )
    repeated = [new for new, count in Counter(overrides.values()).items() if count > 1]
    if repeated:
        raise InsightError(
            f"{where} gives more than one object the name {repeated[0]!r}", hint="every object needs its own name"
        )
    return dict(overrides)


def _listed(game: GameSpec) -> str:
    names = [obj.name if obj.max_count == 1 else f"{obj.name}1, {obj.name}2, ..." for obj in game.objects]
    return ", ".join([*names, "obj<id> (the ids in dataset.json)"])
