"""Planar pose fusion: an EKF over (x, y, yaw, speed, yaw rate) in ``map``, free of ROS.

Entry point: :class:`~geoloc_ros.fusion.filter.PlanarFusionFilter`, configured by
:class:`~geoloc_ros.fusion.config.FusionConfig`.
"""

from geoloc_ros.fusion.config import (
    FusionConfig,
    InitConfig,
    MotionSourceConfig,
    PoseSourceConfig,
    PositionSourceConfig,
    ProcessNoiseConfig,
)
from geoloc_ros.fusion.errors import FusionError, InvalidMeasurementError
from geoloc_ros.fusion.filter import FusionDiagnostics, PlanarFusionFilter, SourceCounters, UpdateResult
from geoloc_ros.fusion.measurements import (
    GpsFix,
    MotionMeasurement,
    PositionMeasurement,
    estimate_from_position,
    position_from_gps_fix,
)
from geoloc_ros.geometry.sources import (
    SOURCE_BOVW,
    SOURCE_FUSED,
    SOURCE_GPS,
    SOURCE_IMU,
    SOURCE_ODOMETRY,
    SOURCE_POSENET,
    SOURCE_POSENET_TEMPORAL,
)

__all__ = [
    "SOURCE_BOVW",
    "SOURCE_FUSED",
    "SOURCE_GPS",
    "SOURCE_IMU",
    "SOURCE_ODOMETRY",
    "SOURCE_POSENET",
    "SOURCE_POSENET_TEMPORAL",
    "FusionConfig",
    "FusionDiagnostics",
    "FusionError",
    "GpsFix",
    "InitConfig",
    "InvalidMeasurementError",
    "MotionMeasurement",
    "MotionSourceConfig",
    "PlanarFusionFilter",
    "PoseSourceConfig",
    "PositionMeasurement",
    "PositionSourceConfig",
    "ProcessNoiseConfig",
    "SourceCounters",
    "UpdateResult",
    "estimate_from_position",
    "position_from_gps_fix",
]
