"""One declaration per option. A stage's config dataclass declares each field a user can set
with `option(default, help, bounds...)`; `command` builds the Typer command from those fields and
`check_bounds` enforces the same bounds on configs made in Python, so the CLI, the defaults and
the validation cannot drift apart.

The config modules (`<verb>/config.py`) import nothing heavy, so `insight --help` stays fast.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from insight_cli.errors import UsageError

OPTION = "insight.option"  # the dataclass field metadata key
DEVICES = ("auto", "cpu", "cuda")
VERBOSE = Annotated[bool, typer.Option("--verbose", "-v", help="Show full tracebacks instead of one-line errors.")]


@dataclass(frozen=True)
class Spec:
    help: str
    flags: tuple[str, ...] = ()  # e.g. ("--ng/--no-ng",); default: --<field-name>
    min: float | None = None
    max: float | None = None
    above: float | None = None  # an exclusive lower bound (a learning rate must be above 0)
    choices: tuple[str, ...] | None = None
    parser: Callable[[str], Any] | None = None  # a value Typer cannot parse by type (e.g. "N|none")
    metavar: str | None = None
    argument: bool = False  # positional, not --name


def option(default: Any = dataclasses.MISSING, help: str = "", **spec: Any) -> Any:
    """A config field that is also a command-line option (see `Spec` for the keywords)."""
    if "choices" in spec:
        spec["choices"] = tuple(spec["choices"])
    metadata = {OPTION: Spec(help, **spec)}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def game_option(default: str = "Pong") -> Any:
    return option(default, "Game: a name from `insight games` (any ALE game works).")


def device_option() -> Any:
    return option("auto", "Where tensors live: auto picks CUDA when a GPU is visible, else CPU.", choices=DEVICES)


def seed_option() -> Any:
    return option(0, "Seed for environments, sampling and initialisation.")


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def check_bounds(config) -> None:
    """Refuse a config whose option values are out of their declared bounds or choices (also
    NaN, which no bound admits), naming the option as the command line spells it."""
    for field in dataclasses.fields(config):
        spec, value = field.metadata.get(OPTION), getattr(config, field.name)
        if spec is None or value is None or isinstance(value, (bool, str, Path)) and not spec.choices:
            continue
        name = flag_name(field.name)
        if spec.choices and value not in spec.choices:
            raise UsageError(f"{name} must be one of {', '.join(spec.choices)}, got {value!r}")
        if isinstance(value, (int, float)):
            if not math.isfinite(value):
                raise UsageError(f"{name} must be a finite number, got {value}")
            if spec.min is not None and value < spec.min:
                raise UsageError(f"{name} must be at least {spec.min:g}, got {value}")
            if spec.above is not None and not value > spec.above:
                raise UsageError(f"{name} must be above {spec.above:g}, got {value}")
            if spec.max is not None and value > spec.max:
                raise UsageError(f"{name} must be at most {spec.max:g}, got {value}")


def _choices_type(name: str, choices: tuple[str, ...]) -> type[Enum]:
    return Enum("".join(part.title() for part in name.split("_")), {choice: choice for choice in choices}, type=str)


def _plain_type(annotation):
    """`Path | None` -> Optional[Path]: the spelling Typer reads."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        if len(members) == 1:
            return Optional[members[0]]
    return annotation


def _parameter(field: dataclasses.Field, annotation, spec: Spec) -> inspect.Parameter:
    default = field.default if field.default is not dataclasses.MISSING else inspect.Parameter.empty
    kind = _plain_type(annotation)
    if spec.choices:
        kind = _choices_type(field.name, spec.choices)
        default = kind(default) if default is not inspect.Parameter.empty else default
    if spec.argument:
        info = typer.Argument(help=spec.help, show_default=False)
    else:
        flags = spec.flags or ((flag_name(field.name),) if kind is bool else ())
        extra = {
            key: getattr(spec, key) for key in ("min", "max", "parser", "metavar") if getattr(spec, key) is not None
        }
        if spec.above is not None and spec.min is None:
            extra["min"] = spec.above  # Typer's bounds are inclusive; check_bounds refuses the bound itself
        info = typer.Option(*flags, help=spec.help, **extra)
    return inspect.Parameter(
        field.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=Annotated[kind, info]
    )


def command(app, config_class, report: Callable[[Any], None], name: str | None = None, wrap=None) -> None:
    """Add the verb `name` to `app`: one option per `option` field of `config_class`, plus
    --verbose; it builds the config from them and hands it to `report` (which runs the stage
    and prints). The command's help is `report`'s docstring. `wrap` decorates the command (the
    CLI's error handling)."""
    hints = typing.get_type_hints(config_class)
    parameters = [
        _parameter(field, hints[field.name], field.metadata[OPTION])
        for field in dataclasses.fields(config_class)
        if OPTION in field.metadata
    ]
    parameters.sort(key=lambda parameter: parameter.default is not inspect.Parameter.empty)  # required ones first
    parameters.append(inspect.Parameter("verbose", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=VERBOSE))

    def verb(**values):
        values.pop("verbose", None)
        report(
            config_class(**{key: value.value if isinstance(value, Enum) else value for key, value in values.items()})
        )

    verb.__signature__ = inspect.Signature(parameters)
    verb.__annotations__ = {parameter.name: parameter.annotation for parameter in parameters}
    verb.__doc__ = report.__doc__
    verb.__name__ = report.__name__.lstrip("_")
    app.command(name)(wrap(verb) if wrap else verb)
