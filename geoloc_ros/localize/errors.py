"""Errors of the BoVW + PnP localizer (:mod:`geoloc_ros.localize`)."""

from geoloc_ros.errors import GeolocError


class LocalizeError(GeolocError):
    """Base class of the localizer's errors."""


class LocalizerSetupError(LocalizeError, ValueError):
    """The localizer cannot start: a map bundle without views or 3D points, a camera that cannot be
    mapped to the map's camera, an invalid prior; the message names what is at fault."""


class QueryFrameError(LocalizeError, ValueError):
    """A query frame cannot be processed (wrong size or type for its camera); the message says why."""


class DriveLocalizationError(LocalizeError):
    """The offline run over a drive failed (no frames, unreadable GPS); the message names the bag."""
