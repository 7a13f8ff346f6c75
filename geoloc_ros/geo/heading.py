"""Compass bearings <-> ENU yaw (REP-103).

Compass heading: degrees, 0 = north, clockwise (what Street View and GPS receivers give).
ENU yaw: radians, 0 = east, counter-clockwise (what the code uses everywhere inside).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def wrap_angle(angle_rad: npt.ArrayLike) -> np.ndarray:
    """Wrap angles to [-pi, pi)."""
    a = np.asarray(angle_rad, dtype=float)
    return (a + np.pi) % (2.0 * np.pi) - np.pi


def angle_difference(a_rad: npt.ArrayLike, b_rad: npt.ArrayLike) -> np.ndarray:
    """Signed smallest difference ``a - b`` in [-pi, pi)."""
    return wrap_angle(np.asarray(a_rad, dtype=float) - np.asarray(b_rad, dtype=float))


def compass_to_enu_yaw(heading_deg: npt.ArrayLike) -> np.ndarray:
    """Compass bearing (deg, clockwise from north) -> ENU yaw (rad, counter-clockwise from east)."""
    return wrap_angle(np.deg2rad(90.0 - np.asarray(heading_deg, dtype=float)))


def enu_yaw_to_compass(yaw_rad: npt.ArrayLike) -> np.ndarray:
    """ENU yaw (rad) -> compass bearing in degrees in [0, 360)."""
    return np.mod(90.0 - np.rad2deg(np.asarray(yaw_rad, dtype=float)), 360.0)
