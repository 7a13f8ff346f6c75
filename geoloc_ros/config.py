"""Typed, validated configuration files.

Every config is a pydantic model deriving from :class:`StrictModel` (unknown keys are errors).
:func:`load_yaml` turns validation failures into a :class:`~geoloc_ros.errors.ConfigError` that
names the file and the dotted field path, e.g. ``scenario.yaml: drive.speed_kmh: must be > 0``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from geoloc_ros.errors import ConfigError, GeolocError

ModelT = TypeVar("ModelT", bound=BaseModel)

# The probability mass inside a chi-square gate (Mahalanobis distance): what falls outside it is
# rejected. The one definition of its range for every gate of every config; below one half it would
# turn away most of what it is meant to let through.
GateProbability = Annotated[float, Field(gt=0.5, lt=1.0)]


class StrictModel(BaseModel):
    """Base for config models: unknown keys are rejected, values are validated on assignment, and
    NaN / infinite numbers are refused in every float field (of every YAML, JSON or parameter input)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, allow_inf_nan=False)


def format_validation_error(error: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path: message``."""
    lines = []
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"]) or "<root>"
        lines.append(f"{source}: {loc}: {item['msg']}")
    return "\n".join(lines)


def validate_mapping(model: type[ModelT], data: Any, source: str) -> ModelT:
    """Validate a parsed mapping against ``model``; errors name ``source`` and the field."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """A YAML parser error on one line: ``line L, column C: problem (context)``."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error).splitlines()[0]
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + problem + (f" ({context})" if context else "")


def read_yaml(path: str | Path, what: str = "config file", error: type[GeolocError] = ConfigError) -> Any:
    """Parse a YAML file. A missing, unreadable, binary or malformed file raises ``error`` with one
    line naming the file (as ``what``), and for bad YAML the line, column and problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{p}: {what} not found") from None
    except UnicodeDecodeError:
        raise error(f"{p}: not a YAML {what} (not UTF-8 text)") from None
    except OSError as exc:
        raise error(f"{p}: cannot read {what}: {exc.strerror or exc}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise error(f"{p}: invalid YAML: {yaml_problem(exc)}") from None


def load_yaml(path: str | Path, model: type[ModelT]) -> ModelT:
    """Read a YAML file and validate it against ``model``."""
    return validate_mapping(model, read_yaml(path), str(path))


def dump_yaml(model: BaseModel) -> str:
    """Serialise a config model to YAML (the form :func:`load_yaml` reads back)."""
    return yaml.safe_dump(model.model_dump(mode="json"), sort_keys=False)
