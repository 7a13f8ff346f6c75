"""Exceptions of the evaluation against ground truth."""

from geoloc_ros.errors import GeolocError


class EvaluationError(GeolocError, ValueError):
    """Ground truth or estimates cannot be evaluated; the message names the source or field at fault."""
