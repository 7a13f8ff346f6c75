"""Exceptions of the simulator."""

from geoloc_ros.errors import ConfigError, GeolocError


class SimError(GeolocError):
    """The simulator cannot produce its output (impossible scenario, rendering failure)."""


class ScenarioError(SimError, ConfigError):
    """A scenario (preset name or YAML file) is invalid; the message names the file and field."""
