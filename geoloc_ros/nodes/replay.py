"""``geoloc replay``: publish a rosbag2's topics with ``/clock`` (for live nodes, ``use_sim_time`` and RViz)
on machines without ``ros2 bag``.

Messages are published as stored (serialized CDR, no deserialization), on a thread paced by the
recorded log times (``rate`` x real time; 0 = as fast as possible). ``/clock`` carries the bag time:
before every message, and at ``clock_rate_hz`` in between.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Path
from pydantic import Field
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import NavSatFix

from geoloc_ros.config import StrictModel
from geoloc_ros.errors import GeolocError
from geoloc_ros.geo.enu import geodetic_to_enu
from geoloc_ros.io.bag import bag_info, read_raw_messages
from geoloc_ros.io.errors import BagError
from geoloc_ros.io.replay import ReplayPacer
from geoloc_ros.mapping.origin import resolve_origin
from geoloc_ros.nodes.common import declare_config, reliable_qos
from geoloc_ros.nodes.messages import ns_to_stamp


class ReplayConfig(StrictModel):
    bag: str = Field(description="rosbag2 directory (or .mcap/.db3 file)")
    rate: float = Field(
        1.0, ge=0.0, le=1000.0, description="playback speed (1 = real time, 0 = as fast as possible)"
    )
    loop: bool = Field(
        False, description="start over at the end (stamps jump back, like ros2 bag play --loop)"
    )
    publish_clock: bool = Field(True, description="publish /clock with the bag time")
    clock_rate_hz: float = Field(100.0, gt=0.0, le=10000.0, description="/clock rate between messages")
    topics: list[str] = Field(default_factory=list, description="topics to replay (empty = all)")
    start_delay_s: float = Field(0.5, ge=0.0, description="wall time to let subscribers connect first")
    map_bundle: str = Field("", description="with a map bundle, also publish the RTK ground truth as a Path")
    groundtruth_topic: str = Field("/rtk/fix", description="NavSatFix topic of the ground truth")
    groundtruth_path_topic: str = Field("/geoloc/groundtruth/path", description="ground truth in map (Path)")
    map_frame: str = Field("map", description="frame of the ground-truth path (the localizers' io.map_frame)")
    path_max_poses: int = Field(5000, ge=1, description="poses kept in the published ground-truth path")


def message_class(msgtype: str) -> Any:
    """``sensor_msgs/msg/Image`` -> the rclpy message class."""
    package, _, name = msgtype.rpartition("/")
    module_name = package.replace("/", ".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError):
        raise BagError(
            f"message type {msgtype} is not installed (no Python module {module_name}.{name})"
        ) from None


class BagReplayNode(Node):
    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("geoloc_replay", **node_kwargs)
        self.config = declare_config(self, ReplayConfig)
        self.info = bag_info(self.config.bag)
        wanted = self.config.topics or sorted(self.info.topics)
        missing = [t for t in wanted if t not in self.info.topics]
        if missing:
            raise BagError(f"{self.config.bag}: topic(s) {', '.join(missing)} not in bag")
        self._topic_publishers: dict[str, Publisher] = {
            topic: self.create_publisher(message_class(self.info.topics[topic]), topic, reliable_qos(100))
            for topic in wanted
        }
        self._topics = wanted
        self._clock_pub = (
            self.create_publisher(Clock, "/clock", reliable_qos(10)) if self.config.publish_clock else None
        )
        self._gt_pub: Publisher | None = None
        self._gt_path = Path()
        if self.config.map_bundle and self.config.groundtruth_topic in self._topics:
            self._origin = resolve_origin(self.config.map_bundle)
            self._gt_path.header.frame_id = self.config.map_frame
            self._gt_pub = self.create_publisher(Path, self.config.groundtruth_path_topic, reliable_qos(1))
        self.done = threading.Event()
        self._stop = threading.Event()
        self.published = 0
        self.loops = 0
        self._thread = threading.Thread(target=self._run, name="geoloc-replay", daemon=True)
        self._thread.start()
        self.get_logger().info(
            f"replaying {len(wanted)} topics of {self.config.bag} "
            f"({self.info.duration_s:.1f} s) at x{self.config.rate}"
        )

    def _publish_clock(self, bag_time_ns: int) -> None:
        if self._clock_pub is not None:
            self._clock_pub.publish(Clock(clock=ns_to_stamp(bag_time_ns)))

    def _sleep_until(self, pacer: ReplayPacer, due: float) -> bool:
        """Sleep until ``due`` (publishing /clock meanwhile); False when asked to stop."""
        period = 1.0 / self.config.clock_rate_hz
        while True:
            now = time.monotonic()
            if self._stop.is_set():
                return False
            if now >= due:
                return True
            time.sleep(min(period, due - now))
            if self.config.rate > 0:
                self._publish_clock(pacer.bag_time_at(min(time.monotonic(), due)))

    def _run(self) -> None:
        pacer = ReplayPacer(self.config.rate)
        time.sleep(self.config.start_delay_s)
        try:
            while not self._stop.is_set():
                pacer.restart(self.info.start_ns, time.monotonic())
                for raw in read_raw_messages(self.config.bag, self._topics):
                    if not self._sleep_until(pacer, pacer.due_at(raw.log_time_ns)):
                        return
                    self._publish_clock(raw.log_time_ns)
                    self._topic_publishers[raw.topic].publish(raw.data)
                    self.published += 1
                    if self._gt_pub is not None and raw.topic == self.config.groundtruth_topic:
                        try:
                            self._publish_groundtruth(raw.data)
                        except (GeolocError, ValueError) as exc:  # a fix with NaN coordinates, ...
                            self.get_logger().warning(
                                f"ground-truth fix skipped: {exc}", throttle_duration_sec=5.0
                            )
                if not self.config.loop:
                    return
                self.loops += 1
                self._gt_path.poses.clear()
                self.get_logger().info(f"bag loop {self.loops}: time jumps back to the start")
        except BagError as exc:
            self.get_logger().error(str(exc))
        finally:
            self.done.set()

    def _publish_groundtruth(self, data: bytes) -> None:
        fix = deserialize_message(data, NavSatFix)
        if fix.status.status < 0:
            return
        east, north, up = geodetic_to_enu(fix.latitude, fix.longitude, fix.altitude, self._origin)
        pose = PoseStamped()
        pose.header = fix.header
        pose.header.frame_id = self.config.map_frame
        pose.pose.position.x, pose.pose.position.y, pose.pose.position.z = (
            float(east),
            float(north),
            float(up),
        )
        pose.pose.orientation.w = 1.0
        self._gt_path.poses.append(pose)
        # Bounded like the fused path: the whole Path is serialized on every fix.
        if len(self._gt_path.poses) > self.config.path_max_poses:
            del self._gt_path.poses[: len(self._gt_path.poses) - self.config.path_max_poses]
        self._gt_path.header.stamp = fix.header.stamp
        if self._gt_pub is not None:
            self._gt_pub.publish(self._gt_path)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)


def replay_bag(
    bag: str | os.PathLike[str],
    *,
    rate: float = 1.0,
    loop: bool = False,
    publish_clock: bool = True,
    topics: Sequence[str] = (),
    map_bundle: str | os.PathLike[str] | None = None,
) -> int | None:
    """``geoloc replay``: init rclpy, replay ``bag`` to the end (or Ctrl-C: None), shut down.

    Returns the number of messages published.
    """
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    rclpy.init()
    node = None
    published = None
    try:
        overrides = [
            Parameter("bag", value=str(bag)),
            Parameter("rate", value=float(rate)),
            Parameter("loop", value=loop),
            Parameter("publish_clock", value=publish_clock),
        ]
        if topics:
            overrides.append(Parameter("topics", value=list(topics)))
        if map_bundle is not None:
            overrides.append(Parameter("map_bundle", value=str(map_bundle)))
        node = BagReplayNode(parameter_overrides=overrides)
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        while not node.done.is_set():
            executor.spin_once(timeout_sec=0.1)
        published = node.published
    except KeyboardInterrupt:
        pass
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return published
