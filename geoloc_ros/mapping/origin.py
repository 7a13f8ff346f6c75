"""The map frame's geodetic origin, from a map bundle or given explicitly."""

from __future__ import annotations

from pathlib import Path

from geoloc_ros.errors import ConfigError
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.mapping.container import Bundle
from geoloc_ros.mapping.errors import BundleFormatError


def bundle_origin(bundle: Bundle) -> GeoOrigin:
    try:
        return GeoOrigin.from_dict(bundle.manifest["origin"])
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleFormatError(f"{bundle.path}: manifest has no valid 'origin' ({exc})") from None


def resolve_origin(
    map_bundle: str | Path | None, lat: float | None = None, lon: float | None = None, alt: float = 0.0
) -> GeoOrigin:
    """The origin of ``map_bundle`` (manifest only, no checksum pass), else ``lat``/``lon``/``alt``."""
    if map_bundle:
        return bundle_origin(Bundle.open(map_bundle, verify="none"))
    if lat is None or lon is None:
        raise ConfigError(
            "the map origin is unknown: give a map bundle or both origin latitude and longitude"
        )
    return GeoOrigin(lat, lon, alt)
