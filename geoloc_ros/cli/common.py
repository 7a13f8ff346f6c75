"""What every subcommand shares: the ``--json`` option, how a summary is printed, and the output
options with their policy (``--out`` and ``--overwrite``, checked before any work)."""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

logger = logging.getLogger(__name__)

json_option = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")

F = TypeVar("F", bound=Callable[..., Any])

BAG_HELP = "Drive bag (a rosbag2 folder, or a drive folder holding bag/ and camera_mounting.yaml)"
MAP_HELP = "Map bundle (geoloc map build)"
POSENET_HELP = "PoseNet model (.onnx, geoloc posenet export)"


def _input_option(
    flag: str, name: str, text: str, role: str, required: bool, multiple: bool = False, **path: Any
) -> Callable[[F], F]:
    return click.option(
        flag,
        name,
        required=required,
        multiple=multiple,
        type=click.Path(exists=True, path_type=Path, **path),
        help=f"{text}{': ' + role if role else ''}.",
    )


def bag_option(role: str = "", *, required: bool = False, multiple: bool = False) -> Callable[[F], F]:
    """``--bag`` (parameter ``bag``): the drive a command reads; ``role`` says what it does with it
    (``multiple``: repeatable, a tuple of drives)."""
    return _input_option("--bag", "bag", BAG_HELP, role, required, multiple=multiple)


def map_option(role: str = "", *, required: bool = False) -> Callable[[F], F]:
    """``--map`` (parameter ``map_dir``): the map bundle a command reads."""
    return _input_option("--map", "map_dir", MAP_HELP, role, required, file_okay=False)


def posenet_option(role: str = "") -> Callable[[F], F]:
    """``--posenet`` (parameter ``posenet``): an exported PoseNet model."""
    return _input_option("--posenet", "posenet", POSENET_HELP, role, False, dir_okay=False)


def output_options(
    help: str,
    *,
    name: str = "out_dir",
    flag: str = "--out",
    required: bool = True,
    file_okay: bool = False,
    inputs: Sequence[str] = (),
) -> Callable[[F], F]:
    """The output option (``--out`` unless ``flag``) and ``--overwrite`` of a command, with the one
    output policy: before the command runs, an output that exists (without ``--overwrite``), that
    cannot be written, or that is (or holds) one of the parameters named in ``inputs`` is refused
    with a one-line error (:func:`geoloc_ros.io.atomic.check_output_writable`).
    """

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def checked(**kwargs: Any) -> Any:
            out = kwargs.get(name)
            if out is not None:
                from geoloc_ros.io.atomic import check_output_writable

                given = [kwargs.get(p) for p in inputs]
                sources = [v for g in given for v in (g if isinstance(g, tuple | list) else [g])]
                check_output_writable(out, kwargs.get("overwrite", False), inputs=sources)
            return command(**kwargs)

        checked.__click_params__ = list(getattr(command, "__click_params__", []))  # type: ignore[attr-defined]
        decorated = click.option(
            "--overwrite", is_flag=True, help=f"Replace an existing {flag} (once the new one is complete)."
        )(checked)
        decorated = click.option(
            flag,
            name,
            required=required,
            type=click.Path(file_okay=file_okay, dir_okay=not file_okay, path_type=Path),
            help=help,
        )(decorated)
        return decorated  # type: ignore[return-value]

    return decorate


DEPRECATED_PREFIX = "deprecated_"


def renamed_option(old: str, new: str, name: str, **option: Any) -> Callable[[F], F]:
    """Keep the old spelling ``old`` of the option ``new`` (parameter ``name``) working for scripts:
    a hidden option (same ``option`` settings as ``new``: type, multiple) whose value goes to ``name``
    with a warning naming ``new``; both at once is a usage error. Put it above ``output_options``
    (its value then counts as an input of the output policy)."""
    hidden = DEPRECATED_PREFIX + name

    def decorate(command: F) -> F:
        @functools.wraps(command)
        def merged(**kwargs: Any) -> Any:
            value = kwargs.pop(hidden)
            if value is not None and value != ():
                ctx = click.get_current_context()
                if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT):
                    raise click.UsageError(f"give {new} (or its old spelling {old}), not both")
                logger.warning("%s is deprecated (renamed %s): it will go in a later release", old, new)
                kwargs[name] = value
            return command(**kwargs)

        merged.__click_params__ = list(getattr(command, "__click_params__", []))  # type: ignore[attr-defined]
        return click.option(old, hidden, hidden=True, help=f"Deprecated spelling of {new}.", **option)(merged)  # type: ignore[return-value]

    return decorate


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def summary_json(summary: Any) -> str:
    """A summary (dict or dataclass, with paths and numpy scalars) as indented JSON."""
    return json.dumps(_plain(summary), indent=2)


def echo_summary(summary: Any, text: str, as_json: bool) -> None:
    """Print ``text`` for people, or the summary as JSON with ``--json``."""
    click.echo(summary_json(summary) if as_json else text)
