"""Records the poses the stack's nodes publish (``geoloc stack``'s summary and ``--record``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from functools import partial
from typing import Any

from geometry_msgs.msg import PoseWithCovarianceStamped
from rclpy.node import Node

from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.sources import SOURCE_FUSED, SOURCE_POSENET_TEMPORAL
from geoloc_ros.nodes.common import reliable_qos
from geoloc_ros.nodes.messages import pose_msg_to_estimate


def published_pose_topics(nodes: Iterable[Node]) -> dict[str, str]:
    """Source name -> pose topic, for every node that publishes PoseWithCovarianceStamped estimates."""
    topics: dict[str, str] = {}
    for node in nodes:
        pose_pub = getattr(node, "pose_pub", None)
        if pose_pub is None:
            continue
        topics[getattr(node, "source", SOURCE_FUSED)] = pose_pub.topic_name
        temporal_pub = getattr(node, "temporal_pub", None)
        if temporal_pub is not None:
            topics[SOURCE_POSENET_TEMPORAL] = temporal_pub.topic_name
    return topics


class EstimateRecorder(Node):
    """Keeps every estimate received on ``topics`` (source -> topic), by source."""

    def __init__(self, topics: Mapping[str, str], **node_kwargs: Any) -> None:
        super().__init__("geoloc_recorder", **node_kwargs)
        self.estimates: dict[str, list[PoseEstimate]] = {source: [] for source in topics}
        self.rejected = 0
        for source, topic in topics.items():
            self.create_subscription(
                PoseWithCovarianceStamped, topic, partial(self._on_pose, source), reliable_qos(100)
            )

    def _on_pose(self, source: str, msg: PoseWithCovarianceStamped) -> None:
        try:
            self.estimates[source].append(pose_msg_to_estimate(msg, source))
        except ValueError as exc:
            self.rejected += 1
            self.get_logger().warning(f"{source}: pose not recorded: {exc}")
