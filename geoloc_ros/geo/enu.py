"""WGS84 geodetic coordinates <-> local ENU tangent plane at a map origin.

The conversion is exact (through ECEF on the WGS84 ellipsoid, via pymap3d), not a flat-earth
approximation: round trips agree to well under a millimetre over tens of kilometres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pymap3d

from geoloc_ros.geo.errors import GeodesyError

ArrayLike = npt.ArrayLike
_WGS84 = pymap3d.Ellipsoid.from_name("wgs84")

# Two map origins closer than this (horizontally) define the same ``map`` frame: a position in one
# is the same position in the other to within this distance. Every check that a model, a view folder
# or an estimate is in a bundle's frame uses it (PoseNet model vs map, synthesized views vs map).
SAME_ORIGIN_TOLERANCE_M = 0.01


def validate_geodetic(lat_deg: ArrayLike, lon_deg: ArrayLike, alt_m: ArrayLike = 0.0) -> None:
    """Raise :class:`GeodesyError` naming the bad value if any coordinate is NaN or out of range."""
    lat = np.asarray(lat_deg, dtype=float)
    lon = np.asarray(lon_deg, dtype=float)
    alt = np.asarray(alt_m, dtype=float)
    for name, values in (("latitude", lat), ("longitude", lon), ("altitude", alt)):
        if not np.all(np.isfinite(values)):
            bad = values[~np.isfinite(values)].ravel()[0] if values.ndim else values
            raise GeodesyError(f"{name} must be a finite number, got {bad}")
    if np.any(np.abs(lat) > 90.0):
        bad = lat[np.abs(lat) > 90.0].ravel()[0] if lat.ndim else lat
        raise GeodesyError(f"latitude {float(bad)} deg is out of range [-90, 90]")
    if np.any(np.abs(lon) > 180.0):
        bad = lon[np.abs(lon) > 180.0].ravel()[0] if lon.ndim else lon
        raise GeodesyError(f"longitude {float(bad)} deg is out of range [-180, 180]")


@dataclass(frozen=True)
class GeoOrigin:
    """Origin of a local ENU tangent plane (the ``map`` frame): WGS84 latitude, longitude, altitude."""

    lat_deg: float
    lon_deg: float
    alt_m: float = 0.0

    def __post_init__(self) -> None:
        validate_geodetic(self.lat_deg, self.lon_deg, self.alt_m)

    def to_dict(self) -> dict[str, float]:
        return {"lat": self.lat_deg, "lon": self.lon_deg, "alt": self.alt_m}

    @classmethod
    def from_dict(cls, data: dict[str, float]) -> GeoOrigin:
        return cls(float(data["lat"]), float(data["lon"]), float(data.get("alt", 0.0)))

    def horizontal_offset_m(self, other: GeoOrigin) -> float:
        """Horizontal distance (metres) of ``other`` from this origin, in this origin's ENU plane."""
        east, north, _ = geodetic_to_enu(other.lat_deg, other.lon_deg, self.alt_m, self)
        return float(np.hypot(east, north))

    def same_frame(self, other: GeoOrigin) -> bool:
        """Whether ``other`` defines the same ``map`` frame (within :data:`SAME_ORIGIN_TOLERANCE_M`)."""
        return self.horizontal_offset_m(other) <= SAME_ORIGIN_TOLERANCE_M


def geodetic_to_enu(
    lat_deg: ArrayLike, lon_deg: ArrayLike, alt_m: ArrayLike, origin: GeoOrigin
) -> np.ndarray:
    """Convert WGS84 coordinates to ENU metres in the tangent plane at ``origin``.

    Inputs broadcast together; the result has shape ``(..., 3)`` with columns east, north, up.
    """
    validate_geodetic(lat_deg, lon_deg, alt_m)
    e, n, u = pymap3d.geodetic2enu(
        np.asarray(lat_deg, dtype=float),
        np.asarray(lon_deg, dtype=float),
        np.asarray(alt_m, dtype=float),
        origin.lat_deg,
        origin.lon_deg,
        origin.alt_m,
        ell=_WGS84,
    )
    return np.stack(np.broadcast_arrays(e, n, u), axis=-1)


def enu_to_geodetic(enu: ArrayLike, origin: GeoOrigin) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Convert ENU metres (``(..., 3)``) at ``origin`` back to WGS84 (lat deg, lon deg, alt m)."""
    xyz = np.asarray(enu, dtype=float)
    if xyz.shape[-1] != 3:
        raise GeodesyError(f"ENU coordinates must have 3 components in the last axis, got shape {xyz.shape}")
    if not np.all(np.isfinite(xyz)):
        raise GeodesyError("ENU coordinates must be finite")
    lat, lon, alt = pymap3d.enu2geodetic(
        xyz[..., 0], xyz[..., 1], xyz[..., 2], origin.lat_deg, origin.lon_deg, origin.alt_m, ell=_WGS84
    )
    return np.asarray(lat), np.asarray(lon), np.asarray(alt)
