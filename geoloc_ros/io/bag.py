"""rosbag2 reading and writing on the ``rosbags`` library (no ROS installation needed).

- :func:`get_typestore` gives the message definitions of a ROS 2 distribution (Humble by default;
  ``sensor_msgs``, ``geometry_msgs``, ``nav_msgs`` and ``std_msgs`` are identical in Humble and Jazzy).
- :class:`BagWriter` writes a rosbag2 directory (MCAP storage by default, sqlite3 on request) that
  ``ros2 bag`` reads. Each message is logged at the time it is given, which the drive simulator sets to
  the message's header stamp (the sample time).
- :func:`read_messages` iterates the deserialized messages of chosen topics in log-time order with
  their stamps; :func:`bag_info` summarises a bag.
- Message builders (:func:`header`, :func:`image_message`, :func:`compressed_image_message`,
  :func:`camera_info_message`, :func:`navsatfix_message`, :func:`imu_message`) make typestore
  message objects from numpy data and integer-nanosecond stamps.

Times are integer nanoseconds (``stamp_ns``) as everywhere in the core.
"""

from __future__ import annotations

import functools
import logging
import shutil
import sqlite3
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml
from rosbags.highlevel import AnyReader, AnyReaderError
from rosbags.rosbag2 import StoragePlugin, Writer, WriterError
from rosbags.typesys import Stores
from rosbags.typesys import get_typestore as _rosbags_typestore
from rosbags.typesys.store import Typestore

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.io.errors import BagError
from geoloc_ros.io.images import array_to_compressed_fields, array_to_image_fields
from geoloc_ros.io.mcap_crc import add_crcs, verify_mcap

logger = logging.getLogger(__name__)

Distro = Literal["humble", "jazzy"]
Storage = Literal["mcap", "sqlite3"]

_STORES: dict[str, Stores] = {"humble": Stores.ROS2_HUMBLE, "jazzy": Stores.ROS2_JAZZY}
_STORAGE_PLUGINS: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}

# NavSatFix constants (sensor_msgs/msg/NavSatFix, NavSatStatus).
COVARIANCE_TYPE_UNKNOWN = 0
COVARIANCE_TYPE_DIAGONAL_KNOWN = 2
STATUS_NO_FIX = -1
STATUS_FIX = 0
STATUS_GBAS_FIX = 2  # RTK fixes are ground-based augmentation
SERVICE_GPS = 1

NS_PER_S = 1_000_000_000


@functools.cache
def get_typestore(distro: Distro = "humble") -> Typestore:
    """The message definitions of a ROS 2 distribution (cached; shared by all callers)."""
    try:
        store = _STORES[distro]
    except KeyError:
        raise BagError(f"unknown ROS 2 distribution {distro!r} (supported: {', '.join(_STORES)})") from None
    return _rosbags_typestore(store)


# ------------------------------------------------------------------------------------------- stamps
def stamp_fields(stamp_ns: int) -> tuple[int, int]:
    """``(sec, nanosec)`` of an integer-nanosecond time (non-negative)."""
    ns = int(stamp_ns)
    if ns < 0:
        raise BagError(f"message stamps must be non-negative, got {ns} ns")
    return ns // NS_PER_S, ns % NS_PER_S


def stamp_to_ns(stamp: Any) -> int:
    """Integer nanoseconds of a ``builtin_interfaces/Time`` (any object with ``sec``, ``nanosec``)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


# ------------------------------------------------------------------------------------------ messages
def _msg_class(typestore: Typestore, msgtype: str) -> Any:
    try:
        return typestore.types[msgtype]
    except KeyError:
        raise BagError(f"message type {msgtype!r} is not in the typestore") from None


def header(typestore: Typestore, stamp_ns: int, frame_id: str) -> Any:
    """A ``std_msgs/msg/Header``."""
    sec, nanosec = stamp_fields(stamp_ns)
    time_cls = _msg_class(typestore, "builtin_interfaces/msg/Time")
    return _msg_class(typestore, "std_msgs/msg/Header")(
        stamp=time_cls(sec=sec, nanosec=nanosec), frame_id=frame_id
    )


def image_message(
    typestore: Typestore, image: np.ndarray, stamp_ns: int, frame_id: str, encoding: str = "bgr8"
) -> Any:
    """A ``sensor_msgs/msg/Image`` holding ``image`` (BGR uint8 by default)."""
    fields = array_to_image_fields(image, encoding)
    return _msg_class(typestore, "sensor_msgs/msg/Image")(
        header=header(typestore, stamp_ns, frame_id), **fields
    )


def compressed_image_message(
    typestore: Typestore,
    image: np.ndarray,
    stamp_ns: int,
    frame_id: str,
    fmt: str = "jpeg",
    quality: int = 90,
) -> Any:
    """A ``sensor_msgs/msg/CompressedImage`` (jpeg or png) of a BGR or mono image."""
    fields = array_to_compressed_fields(image, fmt, quality)
    return _msg_class(typestore, "sensor_msgs/msg/CompressedImage")(
        header=header(typestore, stamp_ns, frame_id), **fields
    )


def camera_info_message(typestore: Typestore, camera: PinholeCamera, stamp_ns: int, frame_id: str) -> Any:
    """A ``sensor_msgs/msg/CameraInfo`` declaring ``camera`` (intrinsics and distortion)."""
    fields = camera.camera_info_fields()
    roi_cls = _msg_class(typestore, "sensor_msgs/msg/RegionOfInterest")
    return _msg_class(typestore, "sensor_msgs/msg/CameraInfo")(
        header=header(typestore, stamp_ns, frame_id),
        height=int(fields["height"]),
        width=int(fields["width"]),
        distortion_model=str(fields["distortion_model"]),
        d=np.asarray(fields["d"], dtype=np.float64),
        k=np.asarray(fields["k"], dtype=np.float64),
        r=np.asarray(fields["r"], dtype=np.float64),
        p=np.asarray(fields["p"], dtype=np.float64),
        binning_x=0,
        binning_y=0,
        roi=roi_cls(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False),
    )


def navsatfix_message(
    typestore: Typestore,
    stamp_ns: int,
    frame_id: str,
    lat_deg: float,
    lon_deg: float,
    alt_m: float,
    position_covariance: npt.ArrayLike | None = None,
    status: int = STATUS_FIX,
) -> Any:
    """A ``sensor_msgs/msg/NavSatFix``; ``position_covariance`` is 3x3 ENU (m²) or None (unknown)."""
    if position_covariance is None:
        cov = np.zeros(9)
        cov_type = COVARIANCE_TYPE_UNKNOWN
    else:
        cov = np.asarray(position_covariance, dtype=np.float64).reshape(9)
        cov_type = COVARIANCE_TYPE_DIAGONAL_KNOWN
    status_cls = _msg_class(typestore, "sensor_msgs/msg/NavSatStatus")
    return _msg_class(typestore, "sensor_msgs/msg/NavSatFix")(
        header=header(typestore, stamp_ns, frame_id),
        status=status_cls(status=int(status), service=SERVICE_GPS),
        latitude=float(lat_deg),
        longitude=float(lon_deg),
        altitude=float(alt_m),
        position_covariance=cov,
        position_covariance_type=cov_type,
    )


def imu_message(
    typestore: Typestore,
    stamp_ns: int,
    frame_id: str,
    orientation_xyzw: npt.ArrayLike,
    orientation_variance_rad2: float,
    angular_velocity: npt.ArrayLike | None = None,
    linear_acceleration: npt.ArrayLike | None = None,
) -> Any:
    """A ``sensor_msgs/msg/Imu`` with an orientation (ENU, ROS order x, y, z, w).

    Rates and accelerations that are not given are marked unknown (covariance[0] = -1, REP-145).
    """
    q = np.asarray(orientation_xyzw, dtype=float).reshape(4)
    quat_cls = _msg_class(typestore, "geometry_msgs/msg/Quaternion")
    vec_cls = _msg_class(typestore, "geometry_msgs/msg/Vector3")
    unknown = np.zeros(9)
    unknown[0] = -1.0

    def vector(values: npt.ArrayLike | None) -> tuple[Any, np.ndarray]:
        if values is None:
            return vec_cls(x=0.0, y=0.0, z=0.0), unknown.copy()
        v = np.asarray(values, dtype=float).reshape(3)
        return vec_cls(x=float(v[0]), y=float(v[1]), z=float(v[2])), np.zeros(9)

    angular, angular_cov = vector(angular_velocity)
    linear, linear_cov = vector(linear_acceleration)
    return _msg_class(typestore, "sensor_msgs/msg/Imu")(
        header=header(typestore, stamp_ns, frame_id),
        orientation=quat_cls(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3])),
        orientation_covariance=np.diag([orientation_variance_rad2] * 3).reshape(9).astype(np.float64),
        angular_velocity=angular,
        angular_velocity_covariance=angular_cov,
        linear_acceleration=linear,
        linear_acceleration_covariance=linear_cov,
    )


# -------------------------------------------------------------------------------------------- writer
class BagWriter:
    """Writes a rosbag2 directory; use as a context manager.

    ``path`` must not exist (the caller decides about overwriting, e.g. by writing inside an
    :func:`~geoloc_ros.io.atomic.atomic_directory`). If the block raises, the partial bag is removed.

    >>> with BagWriter(path) as bag:                            # doctest: +SKIP
    ...     bag.add_topic("/rtk/fix", "sensor_msgs/msg/NavSatFix")
    ...     bag.write("/rtk/fix", stamp_ns, navsatfix_message(bag.typestore, stamp_ns, "rtk_antenna", ...))
    """

    def __init__(
        self,
        path: str | Path,
        storage: Storage = "mcap",
        distro: Distro = "humble",
        version: Literal[8, 9] = 8,
    ) -> None:
        self.path = Path(path)
        if storage not in _STORAGE_PLUGINS:
            raise BagError(f"unknown rosbag2 storage {storage!r} (supported: {', '.join(_STORAGE_PLUGINS)})")
        if self.path.exists():
            raise BagError(f"{self.path}: bag output already exists")
        self.typestore = get_typestore(distro)
        self.storage = storage
        self._writer = Writer(self.path, version=version, storage_plugin=_STORAGE_PLUGINS[storage])
        self._connections: dict[str, Any] = {}
        self._last_stamp: dict[str, int] = {}
        self.counts: dict[str, int] = {}

    def __enter__(self) -> BagWriter:
        try:
            self._writer.open()
        except WriterError as exc:
            raise BagError(f"{self.path}: cannot open bag for writing: {exc}") from None
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is None:
            self._writer.close()
            if self.storage == "mcap":  # rosbags leaves the MCAP CRCs out: fill them in
                for file in self.path.glob("*.mcap"):
                    add_crcs(file)
            logger.info("wrote %s (%s): %s", self.path, self.storage, self.counts)
            return
        # Leave nothing half-written behind.
        try:
            self._writer.close()
        except Exception:  # the bag is being discarded anyway
            logger.debug("closing the aborted bag %s failed", self.path, exc_info=True)
        shutil.rmtree(self.path, ignore_errors=True)

    def add_topic(self, topic: str, msgtype: str) -> None:
        """Declare a topic (once) before writing to it."""
        if topic in self._connections:
            raise BagError(f"{self.path}: topic {topic} declared twice")
        _msg_class(self.typestore, msgtype)
        self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=self.typestore)
        self.counts[topic] = 0

    def write(self, topic: str, stamp_ns: int, msg: Any) -> None:
        """Serialize ``msg`` (a typestore message) and log it at ``stamp_ns``."""
        try:
            connection = self._connections[topic]
        except KeyError:
            raise BagError(f"{self.path}: topic {topic} was not declared with add_topic()") from None
        stamp = int(stamp_ns)
        if stamp < 0:
            raise BagError(f"{self.path}: topic {topic}: negative stamp {stamp}")
        if stamp < self._last_stamp.get(topic, -1):
            raise BagError(
                f"{self.path}: topic {topic}: stamp {stamp} ns is earlier than the previous one "
                f"({self._last_stamp[topic]} ns)"
            )
        self._last_stamp[topic] = stamp
        data = self.typestore.serialize_cdr(msg, connection.msgtype)
        self._writer.write(connection, stamp, data)
        self.counts[topic] += 1


# -------------------------------------------------------------------------------------------- reader
@dataclass(frozen=True)
class BagMessage:
    """One deserialized message: ``log_time_ns`` is the bag's receive time, ``stamp_ns`` the header
    stamp (the log time for messages without a header)."""

    topic: str
    msgtype: str
    log_time_ns: int
    stamp_ns: int
    msg: Any


@dataclass(frozen=True)
class BagInfo:
    path: Path
    topics: dict[str, str]  # topic -> message type
    counts: dict[str, int]
    start_ns: int
    end_ns: int

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) * 1e-9


# What ``rosbags`` raises on a corrupted bag while iterating (turned into :class:`BagError`).
_READ_ERRORS = (AnyReaderError, OSError, ValueError, KeyError, IndexError, struct.error, sqlite3.Error)

_VERIFIED: dict[tuple[str, int, int], None] = {}


def _verify_mcaps(path: Path) -> None:
    """CRC-check the bag's MCAP files (once per file version and process): :mod:`geoloc_ros.io.mcap_crc`."""
    files = [path] if path.is_file() else sorted(path.glob("*.mcap"))
    for file in files:
        if file.suffix != ".mcap":
            continue
        stat = file.stat()
        key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in _VERIFIED:
            verify_mcap(file)
            _VERIFIED[key] = None


def resolve_bag_path(path: str | Path) -> Path:
    """The rosbag2 of ``path``: a bag folder or file as is, or the ``bag/`` folder of a drive folder
    (what ``geoloc sim`` writes and ``geoloc localize`` reads)."""
    p = Path(path)
    if p.is_dir() and not (p / "metadata.yaml").exists() and (p / "bag" / "metadata.yaml").is_file():
        return p / "bag"
    return p


def _open_reader(path: Path, distro: Distro) -> AnyReader:
    if not path.exists():
        raise BagError(f"{path}: bag not found")
    if path.is_dir() and not (path / "metadata.yaml").is_file():
        raise BagError(
            f"{path}: not a rosbag2 folder (metadata.yaml is missing; `ros2 bag reindex` rebuilds it)"
        )
    _verify_mcaps(path)
    try:
        reader = AnyReader([path], default_typestore=get_typestore(distro))
        reader.open()
    except (*_READ_ERRORS, yaml.YAMLError) as exc:
        raise BagError(f"{path}: cannot open bag: {exc}") from None
    return reader


def bag_info(path: str | Path, distro: Distro = "humble") -> BagInfo:
    """Topics, message types, counts and time span of a bag (or of a drive folder's bag)."""
    p = resolve_bag_path(path)
    reader = _open_reader(p, distro)
    try:
        topics: dict[str, str] = {}
        counts: dict[str, int] = {}
        for conn in reader.connections:
            topics[conn.topic] = conn.msgtype
            counts[conn.topic] = counts.get(conn.topic, 0) + conn.msgcount
        return BagInfo(p, topics, counts, int(reader.start_time), int(reader.end_time))
    finally:
        reader.close()


def read_messages(
    path: str | Path,
    topics: Sequence[str] | None = None,
    start_ns: int | None = None,
    stop_ns: int | None = None,
    distro: Distro = "humble",
) -> Iterator[BagMessage]:
    """Deserialized messages of ``topics`` (all when None) in log-time order.

    A requested topic missing from the bag is an error naming it and the topics present.
    ``start_ns``/``stop_ns`` bound the log time (``start <= t < stop``).
    """
    p = resolve_bag_path(path)
    reader = _open_reader(p, distro)
    try:
        available = sorted({c.topic for c in reader.connections})
        if topics is None:
            connections = list(reader.connections)
        else:
            missing = [t for t in topics if t not in available]
            if missing:
                raise BagError(
                    f"{p}: topic(s) {', '.join(missing)} not in bag (it has: {', '.join(available)})"
                )
            wanted = set(topics)
            connections = [c for c in reader.connections if c.topic in wanted]
        messages = reader.messages(connections=connections, start=start_ns, stop=stop_ns)
        while True:
            try:
                conn, log_time, raw = next(messages)
                msg = reader.deserialize(raw, conn.msgtype)
            except StopIteration:
                return
            except _READ_ERRORS as exc:
                raise BagError(f"{p}: corrupted message data: {exc!r}") from None
            stamp_obj = getattr(getattr(msg, "header", None), "stamp", None)
            stamp = stamp_to_ns(stamp_obj) if stamp_obj is not None else int(log_time)
            yield BagMessage(conn.topic, conn.msgtype, int(log_time), stamp, msg)
    finally:
        reader.close()


@dataclass(frozen=True)
class RawBagMessage:
    """One message as stored (CDR bytes), for replaying without deserializing."""

    topic: str
    msgtype: str
    log_time_ns: int
    data: bytes


def read_raw_messages(
    path: str | Path,
    topics: Sequence[str] | None = None,
    distro: Distro = "humble",
) -> Iterator[RawBagMessage]:
    """Serialized messages of ``topics`` (all when None) in log-time order."""
    p = resolve_bag_path(path)
    reader = _open_reader(p, distro)
    try:
        wanted = None if topics is None else set(topics)
        connections = [c for c in reader.connections if wanted is None or c.topic in wanted]
        if wanted is not None:
            missing = sorted(wanted - {c.topic for c in connections})
            if missing:
                available = sorted({c.topic for c in reader.connections})
                raise BagError(
                    f"{p}: topic(s) {', '.join(missing)} not in bag (it has: {', '.join(available)})"
                )
        messages = reader.messages(connections=connections)
        while True:
            try:
                conn, log_time, raw = next(messages)
            except StopIteration:
                return
            except _READ_ERRORS as exc:
                raise BagError(f"{p}: corrupted message data: {exc!r}") from None
            yield RawBagMessage(conn.topic, conn.msgtype, int(log_time), bytes(raw))
    finally:
        reader.close()
