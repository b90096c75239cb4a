"""Names for tracked objects: the game catalogue's names, then `obj<id>`, then the user's
overrides from a small TOML file."""

from __future__ import annotations

import tomllib
from pathlib import Path

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


def load_name_overrides(path: Path | None) -> dict[str, str]:
    """A TOML file mapping default names to the names wanted, e.g. `obj7 = "bullet"`.

    Keys may sit at the top level or under a [names] table; values must be identifiers.
    """
    if path is None:
        return {}
    try:
        data = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InsightError(f"names file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InsightError(f"names file {path} is not valid TOML: {error}") from None
    overrides = data.get("names", data)
    for old, new in overrides.items():
        if not isinstance(new, str) or not new.isidentifier():
            raise InsightError(
                f"names file {path}: {old} = {new!r} is not a valid name", hint="use letters, digits and _"
            )
    return dict(overrides)
