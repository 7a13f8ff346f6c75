"""Scenario files: everything the simulator needs besides the seed.

A scenario is a :class:`Scenario` (pydantic, unknown keys rejected) with sections ``town``,
``capture`` (the GIS panoramas), ``drive`` (the vehicle run and its camera), ``sensors`` (RTK, GPS,
IMU), ``nuisances`` (what differs between capture and drive) and ``bag`` (topics and storage).
Presets ``tiny``, ``demo``, ``standard``, ``realistic`` and ``city`` are defined here in code; a
YAML file may give any subset of fields (the rest take the defaults, which are the ``standard`` values)::

    preset: tiny            # optional: start from a preset, then apply the fields below
    drive:
      speed_kmh: [30, 40]

:func:`load_scenario` accepts a preset name or a path; errors name the file and the dotted field.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field, field_validator, model_validator

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import StrictModel, dump_yaml, read_yaml, validate_mapping
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geometry.frames import CameraMounting
from geoloc_ros.sim.errors import ScenarioError


def _ordered(low: float) -> Callable[[tuple[float, float]], tuple[float, float]]:
    def check(value: tuple[float, float]) -> tuple[float, float]:
        a, b = value
        if not (low <= a <= b):
            raise ValueError(f"must be [min, max] with {low} <= min <= max, got [{a}, {b}]")
        return value

    return check


# A [min, max] pair of non-negative numbers.
Range = Annotated[tuple[float, float], AfterValidator(_ordered(0.0))]


class OriginConfig(StrictModel):
    """WGS84 origin of the town's ENU map frame (ground level at the origin)."""

    lat: float = Field(48.8566, ge=-89.0, le=89.0)
    lon: float = Field(2.3522, ge=-180.0, le=180.0)
    alt: float = Field(35.0, ge=-500.0, le=9000.0)

    def geo_origin(self) -> GeoOrigin:
        return GeoOrigin(self.lat, self.lon, self.alt)


class TownConfig(StrictModel):
    """Street network (a jittered grid with curved streets) and what lines the streets."""

    origin: OriginConfig = OriginConfig()
    blocks_x: int = Field(3, ge=1, le=200, description="grid blocks west-east")
    blocks_y: int = Field(3, ge=1, le=200, description="grid blocks south-north")
    block_size_m: float = Field(110.0, ge=40.0, le=400.0)
    node_jitter_m: float = Field(6.0, ge=0.0, le=30.0)
    curved_fraction: float = Field(0.35, ge=0.0, le=1.0, description="share of streets that are arcs")
    curve_sagitta_m: Range = (8.0, 18.0)
    removed_street_fraction: float = Field(0.08, ge=0.0, le=0.5)
    road_width_m: Range = (7.0, 9.0)
    sidewalk_width_m: Range = (2.5, 4.0)
    building_frontage_m: Range = (8.0, 22.0)
    building_depth_m: Range = (9.0, 16.0)
    building_floors: tuple[int, int] = (2, 7)
    building_setback_m: Range = (0.0, 1.5)
    building_gap_probability: float = Field(0.12, ge=0.0, le=0.9)
    trees_per_100m: float = Field(5.0, ge=0.0, le=40.0, description="per street side")
    poles_per_100m: float = Field(3.0, ge=0.0, le=40.0, description="per street side")
    signs_per_100m: float = Field(2.0, ge=0.0, le=40.0, description="per street side")
    posters_per_100m: float = Field(4.0, ge=0.0, le=40.0, description="per street side")
    texture_px_per_m: float = Field(40.0, ge=5.0, le=200.0, description="façade texture resolution")
    ground_px_per_m: float = Field(48.0, ge=4.0, le=200.0, description="ground texture resolution")

    @field_validator("building_floors")
    @classmethod
    def _floors(cls, value: tuple[int, int]) -> tuple[int, int]:
        lo, hi = value
        if not 1 <= lo <= hi <= 40:
            raise ValueError(f"must be [min, max] with 1 <= min <= max <= 40, got [{lo}, {hi}]")
        return value

    @field_validator("road_width_m")
    @classmethod
    def _two_lanes(cls, value: tuple[float, float]) -> tuple[float, float]:
        if value[0] < 4.0:
            raise ValueError(f"roads must be at least 4 m wide (two lanes), got {value[0]}")
        return value


class MetadataErrorConfig(StrictModel):
    """Error of the panorama metadata (what a GPS/INS-positioned capture car records) against the
    truth. The panorama set carries the erroneous poses; the truth goes to ``panoramas_truth.jsonl``
    beside it, for evaluation only. All zero (the default): exact metadata."""

    position_sigma_m: float = Field(0.0, ge=0.0, le=50.0, description="white error per horizontal axis")
    heading_sigma_deg: float = Field(0.0, ge=0.0, le=30.0, description="white heading error")
    drift_sigma_m: float = Field(
        0.0, ge=0.0, le=50.0, description="slowly drifting error per horizontal axis along the capture run"
    )
    drift_heading_sigma_deg: float = Field(0.0, ge=0.0, le=30.0, description="drifting heading error")
    drift_correlation_m: float = Field(
        150.0, gt=0.0, le=100000.0, description="distance along the run over which the drift decorrelates"
    )
    stated_position_sigma_m: float | None = Field(
        None,
        ge=0.0,
        le=1000.0,
        description="position_sigma_m written into the metadata (None: the true total when any error)",
    )
    stated_heading_sigma_deg: float | None = Field(
        None,
        ge=0.0,
        le=180.0,
        description="heading_sigma_deg written into the metadata (None: the true total when any error)",
    )

    @property
    def any(self) -> bool:
        return any(
            v > 0
            for v in (
                self.position_sigma_m,
                self.heading_sigma_deg,
                self.drift_sigma_m,
                self.drift_heading_sigma_deg,
            )
        )

    def stated(self) -> tuple[float | None, float | None]:
        """(position sigma m, heading sigma deg) the metadata states; None when it states nothing."""
        pos, head = self.stated_position_sigma_m, self.stated_heading_sigma_deg
        if self.any:
            if pos is None:
                pos = float(np.hypot(self.position_sigma_m, self.drift_sigma_m))
            if head is None:
                head = float(np.hypot(self.heading_sigma_deg, self.drift_heading_sigma_deg))
        return pos, head


class CaptureConfig(StrictModel):
    """The GIS capture: a panoramic camera on a car driving the street centre lines."""

    coverage: Literal["route", "all_streets"] = "route"
    spacing_m: float = Field(18.0, ge=5.0, le=100.0)
    spacing_jitter_m: float = Field(2.0, ge=0.0, le=20.0)
    camera_height_m: float = Field(2.5, gt=0.5, le=6.0)
    lateral_jitter_m: float = Field(0.3, ge=0.0, le=3.0)
    heading_jitter_deg: float = Field(2.0, ge=0.0, le=45.0, description="capture car yaw vs street")
    tilt_jitter_deg: float = Field(0.5, ge=0.0, le=10.0, description="pitch/roll of the rig")
    panorama_width: int = Field(4096, ge=256, le=16384)
    depth_width: int = Field(2048, ge=64, le=16384, description="width of the 16-bit depth PNG")
    gsv_depth: bool = Field(True, description="also write Street-View-style coarse plane depth")
    depth: Literal["exact", "plane", "none"] = Field(
        "exact",
        description="depth per panorama: exact range PNG (+ plane model when gsv_depth), "
        "the Street View plane model only, or none",
    )
    no_depth_fraction: float = Field(0.0, ge=0.0, le=1.0, description="share of panoramas without any depth")
    metadata_error: MetadataErrorConfig = MetadataErrorConfig()
    jpeg_quality: int = Field(92, ge=50, le=100)
    captured_at: str = Field("2019-06-12T11:00:00+00:00", description="ISO 8601 time of the first panorama")
    max_panoramas: int | None = Field(None, ge=1, description="cap (None = every spacing_m)")

    @field_validator("panorama_width", "depth_width")
    @classmethod
    def _even(cls, value: int) -> int:
        if value % 2:
            raise ValueError(f"must be even (equirectangular images are 2:1), got {value}")
        return value


class CameraConfig(StrictModel):
    """The on-board camera (true intrinsics; distortion applied when ``nuisances.lens_distortion``)."""

    width: int = Field(640, ge=32, le=8192)
    height: int = Field(480, ge=32, le=8192)
    hfov_deg: float = Field(57.6, gt=10.0, lt=150.0)
    principal_offset_px: tuple[float, float] = (3.0, -2.0)
    distortion: tuple[float, float, float, float, float] = (-0.12, 0.05, 0.0005, -0.0003, 0.0)
    mounting: CameraMounting = CameraMounting(translation=(1.2, 0.0, -0.25), pitch_deg=2.0, yaw_deg=0.5)

    def pinhole(self, distorted: bool) -> PinholeCamera:
        base = PinholeCamera.from_hfov(self.width, self.height, self.hfov_deg)
        return PinholeCamera(
            self.width,
            self.height,
            base.fx,
            base.fy,
            base.cx + self.principal_offset_px[0],
            base.cy + self.principal_offset_px[1],
            "plumb_bob",
            self.distortion if distorted else (),
        )


class DriveConfig(StrictModel):
    """The vehicle run: route through the network, speed, lane, camera."""

    route_length_m: float = Field(520.0, ge=20.0, le=100000.0)
    min_turns: int = Field(1, ge=0, le=50)
    speed_kmh: Annotated[tuple[float, float], AfterValidator(_ordered(1.0))] = (30.0, 50.0)
    max_lateral_accel_mps2: float = Field(2.0, gt=0.1, le=8.0)
    lane_offset_m: float = Field(2.0, ge=0.0, le=6.0, description="to the right of the centre line")
    turn_radius_m: float = Field(9.0, ge=3.0, le=60.0)
    antenna_height_m: float = Field(1.75, gt=0.3, le=5.0, description="base_link (RTK antenna) above ground")
    rate_hz: float = Field(20.0, gt=0.5, le=120.0)
    start_time: str = Field("2024-05-21T17:30:00+00:00", description="ISO 8601 time of the first frame")
    suspension_pitch_deg: float = Field(0.4, ge=0.0, le=5.0)
    suspension_roll_deg: float = Field(0.3, ge=0.0, le=5.0)
    camera: CameraConfig = CameraConfig()
    max_frames: int | None = Field(None, ge=1, description="cap on the number of frames")


class GpsConfig(StrictModel):
    """Consumer GPS: first-order Gauss-Markov position error and dropouts."""

    enabled: bool = True
    rate_hz: float = Field(5.0, gt=0.0, le=50.0)
    sigma_m: float = Field(4.0, ge=0.0, le=50.0, description="steady-state horizontal error per axis")
    vertical_sigma_m: float = Field(6.0, ge=0.0, le=100.0)
    correlation_time_s: float = Field(40.0, gt=0.0, le=3600.0)
    white_noise_m: float = Field(0.5, ge=0.0, le=10.0)
    dropouts_per_minute: float = Field(1.0, ge=0.0, le=60.0)
    dropout_duration_s: Range = (2.0, 8.0)


class SensorsConfig(StrictModel):
    rtk_rate_hz: float = Field(10.0, gt=0.0, le=100.0)
    rtk_sigma_m: float = Field(0.02, ge=0.0, le=1.0)
    imu_rate_hz: float = Field(50.0, gt=0.0, le=1000.0)
    imu_orientation_sigma_deg: float = Field(0.1, ge=0.0, le=10.0)
    gps: GpsConfig = GpsConfig()


class IlluminationConfig(StrictModel):
    """Time of day (local solar hours) and cloud cover of the two epochs."""

    capture_hour: float = Field(11.0, ge=6.0, le=19.0)
    drive_hour: float = Field(17.0, ge=6.0, le=19.0)
    capture_cloud_cover: float = Field(0.25, ge=0.0, le=1.0)
    drive_cloud_cover: float = Field(0.55, ge=0.0, le=1.0)
    drive_tint_bgr: tuple[float, float, float] = Field(
        (1.0, 1.0, 1.0), description="season tint of the drive's light (B, G, R factors; 1 = none)"
    )

    @field_validator("drive_tint_bgr")
    @classmethod
    def _tint(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if not all(0.3 <= v <= 2.0 for v in value):
            raise ValueError(f"each factor must be in [0.3, 2], got {list(value)}")
        return value


class NuisanceConfig(StrictModel):
    """What makes the drive differ from the GIS capture; zero / false disables each one."""

    illumination: IlluminationConfig = IlluminationConfig()
    sensor_noise_sigma: float = Field(2.5, ge=0.0, le=50.0, description="read noise, grey levels")
    shot_noise: float = Field(0.6, ge=0.0, le=5.0, description="photon noise gain (sigma = gain*sqrt(DN))")
    motion_blur_exposure_ms: float = Field(6.0, ge=0.0, le=100.0)
    vignetting: float = Field(0.25, ge=0.0, le=0.9, description="corner darkening fraction")
    vehicles_per_100m: float = Field(5.0, ge=0.0, le=40.0, description="parked + traffic, per epoch")
    pedestrians_per_100m: float = Field(4.0, ge=0.0, le=60.0, description="per epoch")
    poster_change_fraction: float = Field(0.5, ge=0.0, le=1.0)
    shop_sign_change_fraction: float = Field(0.1, ge=0.0, le=1.0)
    lens_distortion: bool = True


class BagConfig(StrictModel):
    storage: Literal["mcap", "sqlite3"] = "mcap"
    distro: Literal["humble", "jazzy"] = "humble"
    image_transport: Literal["raw", "compressed"] = "raw"
    jpeg_quality: int = Field(90, ge=30, le=100)
    image_topic: str = "/camera/image_raw"
    camera_info_topic: str = "/camera/camera_info"
    gps_topic: str = "/gps/fix"
    rtk_topic: str = "/rtk/fix"
    imu_topic: str = "/rtk/imu"
    camera_frame: str = "camera_optical"
    rtk_frame: str = "rtk_antenna"
    gps_frame: str = "gps"
    imu_frame: str = "base_link"

    @field_validator("image_topic", "camera_info_topic", "gps_topic", "rtk_topic", "imu_topic")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or any(ch.isspace() for ch in value):
            raise ValueError(f"must be an absolute ROS topic name, got {value!r}")
        return value

    @model_validator(mode="after")
    def _distinct(self) -> BagConfig:
        topics = [self.image_topic, self.camera_info_topic, self.gps_topic, self.rtk_topic, self.imu_topic]
        if len(set(topics)) != len(topics):
            raise ValueError("the topics must be distinct")
        return self

    @property
    def image_topic_resolved(self) -> str:
        """The image topic with image_transport's ``/compressed`` suffix when compressed."""
        return self.image_topic + "/compressed" if self.image_transport == "compressed" else self.image_topic


class RenderConfig(StrictModel):
    supersample: int = Field(
        2, ge=1, le=4, description="drive frames rendered at this factor, then area-averaged"
    )
    panorama_supersample: float = Field(1.25, ge=1.0, le=3.0, description="cube-face oversampling")
    view_distance_m: float = Field(220.0, ge=20.0, le=2000.0)
    workers: int | None = Field(None, ge=1, le=256, description="processes (None = all cores)")


class Scenario(StrictModel):
    name: str = "custom"
    town: TownConfig = TownConfig()
    capture: CaptureConfig = CaptureConfig()
    drive: DriveConfig = DriveConfig()
    sensors: SensorsConfig = SensorsConfig()
    nuisances: NuisanceConfig = NuisanceConfig()
    bag: BagConfig = BagConfig()
    render: RenderConfig = RenderConfig()

    def to_yaml(self) -> str:
        return dump_yaml(self)


# Presets as overrides of the defaults (the defaults are the benchmark, ``standard``).
PRESETS: dict[str, dict[str, Any]] = {
    "standard": {"name": "standard"},
    # `geoloc demo`: the standard town's realism on half the route, a few minutes end to end.
    "demo": {"name": "demo", "town": {"blocks_x": 2, "blocks_y": 2}, "drive": {"route_length_m": 260.0}},
    # Real GIS imagery: metadata off by ~1 m / 1.5 deg (part of it drifting along the capture run),
    # plane-model depth only, 10 % without depth, 15-30 m spacing, and more change before the drive.
    "realistic": {
        "name": "realistic",
        "capture": {
            "spacing_m": 22.5,
            "spacing_jitter_m": 7.5,
            "depth": "plane",
            "no_depth_fraction": 0.1,
            "metadata_error": {
                "position_sigma_m": 0.8,
                "heading_sigma_deg": 1.2,
                "drift_sigma_m": 0.6,
                "drift_heading_sigma_deg": 0.9,
                "stated_position_sigma_m": 1.0,
                "stated_heading_sigma_deg": 1.5,
            },
        },
        "nuisances": {
            "illumination": {"drive_tint_bgr": [0.92, 1.0, 1.08]},
            "poster_change_fraction": 0.8,
            "shop_sign_change_fraction": 0.3,
        },
    },
    "tiny": {
        "name": "tiny",
        "town": {
            "blocks_x": 1,
            "blocks_y": 1,
            "block_size_m": 70.0,
            "curved_fraction": 0.5,
            "removed_street_fraction": 0.0,
            "building_frontage_m": [8.0, 16.0],
            "texture_px_per_m": 20.0,
            "ground_px_per_m": 16.0,
        },
        "capture": {"panorama_width": 1024, "depth_width": 512},
        "drive": {
            "route_length_m": 100.0,
            "rate_hz": 5.0,
            "speed_kmh": [30.0, 40.0],
            "camera": {"width": 320, "height": 240},
        },
        "render": {"supersample": 1, "panorama_supersample": 1.0, "view_distance_m": 90.0},
    },
    "city": {
        "name": "city",
        "town": {"blocks_x": 14, "blocks_y": 14, "texture_px_per_m": 16.0, "ground_px_per_m": 16.0},
        "capture": {"coverage": "all_streets", "panorama_width": 1024, "depth_width": 512},
        "drive": {"route_length_m": 1500.0},
        "render": {"supersample": 1, "panorama_supersample": 1.0, "view_distance_m": 160.0},
    },
}


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def preset(name: str) -> Scenario:
    """A named preset (``tiny``, ``demo``, ``standard``, ``realistic``, ``city``)."""
    try:
        overrides = PRESETS[name]
    except KeyError:
        raise ScenarioError(f"unknown scenario preset {name!r} (presets: {', '.join(PRESETS)})") from None
    return validate_scenario(overrides, f"preset {name}")


def validate_scenario(data: Any, source: str) -> Scenario:
    """Validate a parsed mapping (with an optional ``preset`` key to start from)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    mapping = dict(data)
    base_name = mapping.pop("preset", None)
    if base_name is not None:
        if base_name not in PRESETS:
            raise ScenarioError(
                f"{source}: preset: unknown preset {base_name!r} (presets: {', '.join(PRESETS)})"
            )
        mapping = _deep_merge(PRESETS[base_name], mapping)
    try:
        return validate_mapping(Scenario, mapping, source)
    except ScenarioError:
        raise
    except Exception as exc:  # ConfigError from validate_mapping: re-raise as the sim's family
        raise ScenarioError(str(exc)) from None


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A preset by name, or a YAML scenario file; errors name the file and field."""
    text = str(name_or_path)
    if text in PRESETS:
        return preset(text)
    path = Path(text)
    if not path.is_file():
        raise ScenarioError(f"{path}: no such scenario file (and not a preset: {', '.join(PRESETS)})")
    return validate_scenario(read_yaml(path, "scenario file", ScenarioError), str(path))
