"""What every subcommand shares: the ``--json`` option and how a summary is printed."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")


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
