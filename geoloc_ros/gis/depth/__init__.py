"""Depth formats of panorama sets, chosen by name through a small registry.

A panorama record names its depth file (``depth``) and, optionally, the file's format
(``depth_format``, default ``png_mm``); ``depth_gsv`` is the Street View plane format
(``streetview``). Each format is one module with a loader
``load_depth(path, what, width=None) -> float32 range map`` (metres along each ray, 0 = unknown,
2:1); ``what`` names the panorama in error messages, ``width`` asks formats that can evaluate
depth at any resolution (plane models) for that grid width, raster formats return their own grid.

Built-in formats: ``png_mm`` (:mod:`geoloc_ros.gis.depth.png_mm`, 16-bit PNG in millimetres) and
``streetview`` (:mod:`geoloc_ros.gis.depth.streetview`, Google's ``depth_map`` planes). A new
format is one module plus :func:`register_depth_format` (or its dotted module path given as the
record's ``depth_format``, if the module defines ``load_depth``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

from geoloc_ros.gis.errors import DepthFormatError

DepthLoader = Callable[[Path, str, "int | None"], np.ndarray]

DEFAULT_DEPTH_FORMAT = "png_mm"
STREETVIEW_DEPTH_FORMAT = "streetview"
# Built-in formats, imported on first use (the Street View decoder is not needed by PNG sets).
_BUILTIN = {
    DEFAULT_DEPTH_FORMAT: "geoloc_ros.gis.depth.png_mm",
    STREETVIEW_DEPTH_FORMAT: "geoloc_ros.gis.depth.streetview",
}
_LOADERS: dict[str, DepthLoader] = {}


def register_depth_format(name: str, loader: DepthLoader, *, replace: bool = False) -> None:
    """Make ``loader`` the depth format ``name`` (a name already taken is refused unless ``replace``)."""
    if not name:
        raise DepthFormatError("a depth format needs a name")
    if not replace and (name in _LOADERS or name in _BUILTIN):
        raise DepthFormatError(f"depth format {name!r} is already registered")
    _LOADERS[name] = loader


def unregister_depth_format(name: str) -> None:
    """Forget a registered format (tests); built-in formats stay."""
    _LOADERS.pop(name, None)


def depth_formats() -> list[str]:
    """The names of the known formats, built-in and registered."""
    return sorted({*_BUILTIN, *_LOADERS})


def depth_loader(name: str) -> DepthLoader:
    """The loader of format ``name``: registered, built-in, or a module path defining ``load_depth``."""
    if name in _LOADERS:
        return _LOADERS[name]
    module_name = _BUILTIN.get(name, name if "." in name else None)
    if module_name is not None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise DepthFormatError(f"depth format {name!r}: cannot import {module_name}: {exc}") from None
        loader = getattr(module, "load_depth", None)
        if callable(loader):
            _LOADERS[name] = loader
            return loader
        raise DepthFormatError(f"depth format {name!r}: {module_name} has no load_depth()")
    raise DepthFormatError(f"unknown depth format {name!r} (known: {', '.join(depth_formats())})")


def load_depth(path: str | Path, depth_format: str, what: str, width: int | None = None) -> np.ndarray:
    """The range map (float32 metres, 0 = unknown) of the depth file ``path`` in ``depth_format``."""
    return depth_loader(depth_format)(Path(path), what, width)
