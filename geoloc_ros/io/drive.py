"""A recorded drive: camera frames, camera model and mounting, consumer GPS and RTK ground truth.

The one I/O boundary between drive bags (docs/formats.md) and the ROS-free evaluation: everything
comes out as core types (BGR arrays, :class:`PinholeCamera`, :class:`CameraMounting`, stamped
GNSS samples). Frames stream one at a time, so a long drive never sits in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import StrictModel
from geoloc_ros.errors import GeolocError
from geoloc_ros.geometry.frames import CameraMounting
from geoloc_ros.io.bag import bag_info, read_messages
from geoloc_ros.io.errors import BagError
from geoloc_ros.io.images import message_to_array

logger = logging.getLogger(__name__)

MOUNTING_NAME = "camera_mounting.yaml"
CAMERA_NAME = "camera.yaml"


class DriveTopics(StrictModel):
    """Topic names of a drive bag (the defaults are those the simulator writes)."""

    image: str = Field("/camera/image_raw", description="sensor_msgs/Image")
    compressed_image: str = Field("/camera/image_raw/compressed", description="sensor_msgs/CompressedImage")
    camera_info: str = "/camera/camera_info"
    gps: str = "/gps/fix"
    rtk_fix: str = "/rtk/fix"
    rtk_imu: str = "/rtk/imu"


@dataclass(frozen=True)
class Frame:
    index: int
    stamp_ns: int
    image: np.ndarray  # BGR uint8, as recorded (distorted)


@dataclass(frozen=True)
class GnssSeries:
    """NavSatFix samples as arrays (fixes without a solution, status < 0, are left out)."""

    stamps_ns: np.ndarray
    latitude_deg: np.ndarray
    longitude_deg: np.ndarray
    altitude_m: np.ndarray
    covariance: np.ndarray  # (N, 9) row-major ENU, m^2
    covariance_type: np.ndarray  # (N,) int

    def __len__(self) -> int:
        return len(self.stamps_ns)


@dataclass(frozen=True)
class OrientationSeries:
    stamps_ns: np.ndarray
    quaternions_xyzw: np.ndarray  # (N, 4), ENU orientation of base_link


def _find_bag(path: Path) -> tuple[Path, Path]:
    """(bag path, drive directory holding camera_mounting.yaml) from a bag or a drive directory."""
    if (path / "bag").is_dir():
        return path / "bag", path
    if (path / "metadata.yaml").is_file() or path.suffix in (".mcap", ".db3"):
        return path, path.parent
    raise BagError(f"{path}: neither a rosbag2 directory nor a drive directory holding one (bag/)")


class DriveBag:
    def __init__(
        self, path: str | Path, topics: DriveTopics | None = None, mounting: CameraMounting | None = None
    ) -> None:
        self.bag_path, self.drive_dir = _find_bag(Path(path))
        self.topics = topics or DriveTopics()
        self.info = bag_info(self.bag_path)
        if self.topics.image in self.info.topics:
            self.image_topic = self.topics.image
        elif self.topics.compressed_image in self.info.topics:
            self.image_topic = self.topics.compressed_image
        else:
            raise BagError(
                f"{self.bag_path}: no camera topic ({self.topics.image} or {self.topics.compressed_image}); "
                f"it has {', '.join(sorted(self.info.topics))}"
            )
        self.mounting = mounting or self._load_mounting()
        self._camera: PinholeCamera | None = None

    def _load_mounting(self) -> CameraMounting:
        path = self.drive_dir / MOUNTING_NAME
        if path.is_file():
            return CameraMounting.load(path)
        logger.warning(
            "%s: no %s; assuming the camera sits at base_link looking forward", self.drive_dir, MOUNTING_NAME
        )
        return CameraMounting()

    @property
    def n_frames(self) -> int:
        return self.info.counts[self.image_topic]

    @property
    def camera(self) -> PinholeCamera:
        """The camera model: the first CameraInfo of the bag, else camera.yaml beside it."""
        if self._camera is None:
            if self.topics.camera_info in self.info.topics:
                for message in read_messages(self.bag_path, [self.topics.camera_info]):
                    self._camera = PinholeCamera.from_camera_info(message.msg)
                    break
            elif (self.drive_dir / CAMERA_NAME).is_file():
                self._camera = PinholeCamera.load(self.drive_dir / CAMERA_NAME)
            else:
                raise BagError(
                    f"{self.bag_path}: no {self.topics.camera_info} topic and no {CAMERA_NAME} beside it"
                )
        assert self._camera is not None
        return self._camera

    def frame_stamps(self) -> np.ndarray:
        return np.array(
            [m.stamp_ns for m in read_messages(self.bag_path, [self.image_topic])], dtype=np.int64
        )

    def frames(self, stride: int = 1, max_frames: int | None = None) -> Iterator[Frame]:
        """Camera frames in time order; undecodable frames are logged and skipped."""
        produced = 0
        for index, message in enumerate(read_messages(self.bag_path, [self.image_topic])):
            if index % stride:
                continue
            try:
                image = message_to_array(message.msg, "bgr8")
            except GeolocError as exc:
                logger.warning("%s: frame %d at %d skipped: %s", self.bag_path, index, message.stamp_ns, exc)
                continue
            yield Frame(index, message.stamp_ns, image)
            produced += 1
            if max_frames is not None and produced >= max_frames:
                return

    def _gnss(self, topic: str) -> GnssSeries:
        if topic not in self.info.topics:
            raise BagError(f"{self.bag_path}: no {topic} topic")
        rows = [
            m for m in read_messages(self.bag_path, [topic]) if int(getattr(m.msg.status, "status", 0)) >= 0
        ]
        return GnssSeries(
            np.array([m.stamp_ns for m in rows], dtype=np.int64),
            np.array([m.msg.latitude for m in rows], dtype=float),
            np.array([m.msg.longitude for m in rows], dtype=float),
            np.array([m.msg.altitude for m in rows], dtype=float),
            np.array([np.asarray(m.msg.position_covariance, dtype=float) for m in rows]).reshape(-1, 9),
            np.array([int(m.msg.position_covariance_type) for m in rows], dtype=int),
        )

    def rtk(self) -> GnssSeries:
        return self._gnss(self.topics.rtk_fix)

    def gps(self) -> GnssSeries | None:
        return self._gnss(self.topics.gps) if self.topics.gps in self.info.topics else None

    def rtk_orientation(self) -> OrientationSeries | None:
        if self.topics.rtk_imu not in self.info.topics:
            return None
        stamps, quats = [], []
        for m in read_messages(self.bag_path, [self.topics.rtk_imu]):
            o = m.msg.orientation
            if m.msg.orientation_covariance[0] < 0:  # REP-145: orientation not provided
                continue
            stamps.append(m.stamp_ns)
            quats.append((o.x, o.y, o.z, o.w))
        if not stamps:
            return None
        return OrientationSeries(np.array(stamps, dtype=np.int64), np.array(quats, dtype=float))
