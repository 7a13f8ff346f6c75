"""``posenet_localizer``: ONNX PoseNet on the newest rectified frame, plus its causal temporal filter.

Publishes ``pose_topic`` (single-frame PoseNet) and ``temporal_pose_topic`` (the causal CTRV filter over
the single-frame outputs), both PoseWithCovarianceStamped in ``map`` stamped with the image stamp, a
NavSatFix of the single-frame estimate, and ``/diagnostics`` (execution provider, rate, latency,
frames dropped, bad inputs). onnxruntime only: no torch on the vehicle. The execution provider is
chosen by ``providers`` and availability (TensorRT -> CUDA -> CPU for ``auto``) and logged; the model
is warmed up before the node subscribes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from geometry_msgs.msg import PoseWithCovarianceStamped
from pydantic import Field

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import StrictModel
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.geometry.sources import SOURCE_POSENET, SOURCE_POSENET_TEMPORAL
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.nodes.common import reliable_qos, run_node
from geoloc_ros.nodes.localizer_base import ImageLocalizerNode, LocalizerIOConfig
from geoloc_ros.posenet.errors import TemporalError
from geoloc_ros.posenet.inference import PoseNetPredictor
from geoloc_ros.posenet.temporal import CausalPoseFilter, TemporalConfig


class PoseNetNodeConfig(StrictModel):
    model: str = Field(description="exported PoseNet .onnx (geoloc posenet export)")
    providers: str = Field("auto", description="auto | tensorrt | cuda | cpu (comma-separated order)")
    threads: int = Field(0, ge=0, le=64, description="onnxruntime CPU threads (0 = one per core)")
    map_bundle: str = Field("", description="map bundle (for the NavSatFix output's origin); optional")
    pose_topic: str = Field("/geoloc/posenet/pose", description="single-frame PoseNet poses")
    temporal_pose_topic: str = Field("/geoloc/posenet/pose_temporal", description="temporally filtered poses")
    fix_topic: str = Field("/geoloc/posenet/fix", description="NavSatFix of the single-frame pose")
    temporal: bool = Field(True, description="run and publish the causal temporal filter")
    allow_map_mismatch: bool = Field(
        False, description="experts: use a model trained on another map than map_bundle (refused by default)"
    )
    io: LocalizerIOConfig = LocalizerIOConfig()


class PoseNetLocalizerNode(ImageLocalizerNode):
    source = SOURCE_POSENET
    config_model = PoseNetNodeConfig

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__("posenet_localizer", **node_kwargs)
        cfg: PoseNetNodeConfig = self.config
        bundle = MapBundle.open(cfg.map_bundle, verify="none") if cfg.map_bundle else None
        if bundle is not None:
            self.origin = bundle.origin
        providers = [p.strip() for p in cfg.providers.split(",")]
        self.predictor = PoseNetPredictor(
            cfg.model,
            providers=providers if len(providers) > 1 else providers[0],
            t_base_optical=self.mounting.base_to_optical(),
            intra_op_threads=cfg.threads,
        )
        if bundle is not None:  # a model trained for another town is refused (names both)
            note = self.predictor.info.check_map(
                bundle.bundle_id, bundle.origin, str(bundle.path), cfg.allow_map_mismatch
            )
            self.get_logger().info(note)
        else:
            self.get_logger().warning("no map_bundle: the model's map cannot be checked")
        self.get_logger().info(f"PoseNet {cfg.model} on {self.predictor.provider} (warmed up)")
        self.diagnostics.gauge("provider", self.predictor.provider)
        self.temporal_filter = CausalPoseFilter(TemporalConfig()) if cfg.temporal else None
        self.temporal_pub = (
            self.create_publisher(PoseWithCovarianceStamped, cfg.temporal_pose_topic, reliable_qos(10))
            if cfg.temporal
            else None
        )
        self._input_camera: PinholeCamera | None = None
        self.start()

    def apply_extrinsics(self, t_base_optical: Pose3D) -> None:
        self.predictor.t_base_optical = t_base_optical

    def localize(self, image: np.ndarray, camera: PinholeCamera | None, stamp_ns: int) -> list[PoseEstimate]:
        if camera is not None and camera != self._input_camera:
            # Resample onto the training camera when the processing camera differs from it.
            self._input_camera = camera
            if camera != self.predictor.info.camera:
                self.predictor.set_input_camera(camera)
        estimate = self.predictor.predict(image, stamp_ns)
        if self.temporal_filter is not None and self.temporal_pub is not None:
            try:
                smoothed = self.temporal_filter.update(estimate)
            except TemporalError as exc:
                self.diagnostics.bad_input("posenet_output", str(exc))
            else:
                self.publish_estimate(
                    dataclasses.replace(smoothed, source=SOURCE_POSENET_TEMPORAL), publisher=self.temporal_pub
                )
        self.diagnostics.gauge(
            "inference_ms", round(float(estimate.info.get("inference_ms", float("nan"))), 2)
        )
        return [estimate]


def main(args: list[str] | None = None) -> int:
    return run_node(PoseNetLocalizerNode, args, lifecycle_name="posenet_localizer")


if __name__ == "__main__":
    raise SystemExit(main())
