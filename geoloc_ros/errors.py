"""Root of the project's exception hierarchy.

Each subpackage defines its own exceptions in ``<subpackage>/errors.py`` deriving from
:class:`GeolocError`, so callers can catch one family or everything. Messages name the file,
field, topic or value at fault.
"""


class GeolocError(Exception):
    """Base class of every error raised on purpose by geoloc_ros."""


class ConfigError(GeolocError, ValueError):
    """A configuration file or value is invalid; the message names the file and field."""
