"""Conversions between ROS messages and core types (the ROS edge of the data flow)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import PoseWithCovarianceStamped
from sensor_msgs.msg import NavSatFix, NavSatStatus

from geoloc_ros.geo.enu import GeoOrigin, enu_to_geodetic
from geoloc_ros.geometry.covariance import from_row_major, to_row_major
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.pose import Pose3D


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (or any object with sec/nanosec) -> integer nanoseconds."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def ns_to_stamp(stamp_ns: int) -> Time:
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    return Time(sec=sec, nanosec=nanosec)


def estimate_to_pose_msg(estimate: PoseEstimate) -> PoseWithCovarianceStamped:
    msg = PoseWithCovarianceStamped()
    msg.header.stamp = ns_to_stamp(estimate.stamp_ns)
    msg.header.frame_id = estimate.frame_id
    t = estimate.pose.translation
    q = estimate.pose.quaternion
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = (float(v) for v in t)
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = (float(v) for v in q)
    msg.pose.covariance = to_row_major(estimate.covariance)
    return msg


def pose_msg_to_estimate(msg: PoseWithCovarianceStamped, source: str = "") -> PoseEstimate:
    """Message -> PoseEstimate. Raises ValueError (covariance, quaternion) with the reason.

    An all-zero covariance (the message's default: nobody filled it in) is refused, not taken as exact."""
    p, o = msg.pose.pose.position, msg.pose.pose.orientation
    values = [p.x, p.y, p.z, o.x, o.y, o.z, o.w]
    if not all(math.isfinite(v) for v in values):
        raise ValueError("pose contains NaN or infinite values")
    if not any(msg.pose.covariance):
        raise ValueError("pose covariance is all zero (not filled in): its uncertainty is unknown")
    pose = Pose3D.from_xyz_quaternion([p.x, p.y, p.z], [o.x, o.y, o.z, o.w])
    covariance = from_row_major(np.asarray(msg.pose.covariance, dtype=float))
    return PoseEstimate(stamp_to_ns(msg.header.stamp), pose, covariance, source, frame_id=msg.header.frame_id)


def estimate_to_navsatfix(
    estimate: PoseEstimate, origin: GeoOrigin, frame_id: str = "base_link"
) -> NavSatFix:
    """The estimate as a GNSS-like fix: lat/lon/alt, position covariance in ENU (NavSatFix's convention)."""
    lat, lon, alt = enu_to_geodetic(estimate.pose.translation, origin)
    msg = NavSatFix()
    msg.header.stamp = ns_to_stamp(estimate.stamp_ns)
    msg.header.frame_id = frame_id
    msg.status.status = NavSatStatus.STATUS_FIX
    msg.status.service = NavSatStatus.SERVICE_GPS
    msg.latitude, msg.longitude, msg.altitude = float(lat), float(lon), float(alt)
    msg.position_covariance = [float(v) for v in estimate.covariance[:3, :3].reshape(9)]
    msg.position_covariance_type = NavSatFix.COVARIANCE_TYPE_KNOWN
    return msg
