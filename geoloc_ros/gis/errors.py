"""Exceptions of :mod:`geoloc_ros.gis`; messages name the file, field or value at fault."""

from __future__ import annotations

from geoloc_ros.errors import GeolocError


class GisError(GeolocError):
    """Base class of the errors raised by the GIS subpackage."""


class PanoramaSetError(GisError, ValueError):
    """A panorama set is malformed; the message names the file, line and field."""


class StreetViewError(GisError, ValueError):
    """Street View metadata or a ``depth_map`` string cannot be decoded; names the file and field."""


class ViewSynthesisError(GisError, ValueError):
    """A rectified or virtual view cannot be synthesized (bad inputs or configuration)."""


class DepthFormatError(GisError, ValueError):
    """A depth format is unknown or cannot be registered; the message names it."""
