"""What the regressor predicts, how targets are normalised, and how outputs become vehicle poses.

Frames (docs/architecture.md): training views carry ``T_map_optical``. The network regresses the
pose of the camera **body** frame (x forward, y left, z up; :mod:`geoloc_ros.geometry.frames`) in
``map``, because its yaw is the vehicle-style heading:

- ``dof=3`` (default, as in the seed): outputs ``(x_n, y_n, cos yaw, sin yaw)``;
- ``dof=6``: outputs ``(x_n, y_n, z_n, qx, qy, qz, qw)``, the body orientation as a ROS-ordered
  quaternion with ``w >= 0`` (one hemisphere, so the target is unique).

Positions are normalised as ``(p - mean) / scale`` with a per-axis mean and **one** isotropic
scale (the RMS spread of the training positions per axis), so distances in normalised units stay
proportional to metres and the loss does not favour one axis.

Each sample also gets two log-variance outputs ``(s_pos, s_rot)`` (aleatoric uncertainty):

- ``s_pos``: log of the per-axis position variance in normalised units; metres² =
  ``exp(s_pos) * scale²``;
- ``s_rot``: for ``dof=3`` the log variance of the heading (rad²; the training residual is the
  chord ``|h - ĥ/|ĥ||`` = 2 sin(Δψ/2) ≈ Δψ); for ``dof=6`` the log of a quarter of the per-axis
  rotation variance (the chord between unit quaternions is ≈ half the rotation angle), so
  rad² per axis = ``4 exp(s_rot)``.

The vehicle pose follows from the camera mounting ``T_base_optical``
(:meth:`CameraPosePrediction.base_estimate`), with first-order propagation of the heading
uncertainty through the lever arm between camera and ``base_link``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from geoloc_ros.geo.heading import wrap_angle
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.geometry.frames import T_BODY_OPTICAL, body_pose_from_optical
from geoloc_ros.geometry.pose import Pose2D, Pose3D, quaternion_from_rotation, rotation_from_quaternion
from geoloc_ros.geometry.sources import SOURCE_POSENET
from geoloc_ros.posenet.errors import ModelError

SUPPORTED_DOF = (3, 6)
# Log-variances are clipped to this range when decoded: exp() of a wild output must stay finite.
LOG_VARIANCE_RANGE = (-30.0, 30.0)


def pose_output_size(dof: int) -> int:
    """Width of the pose output: 4 for ``dof=3`` (x, y, cos, sin), 7 for ``dof=6``."""
    check_dof(dof)
    return 4 if dof == 3 else 7


def position_size(dof: int) -> int:
    return 2 if dof == 3 else 3


def check_dof(dof: int) -> None:
    if dof not in SUPPORTED_DOF:
        raise ModelError(f"dof must be 3 (x, y, heading) or 6 (position + quaternion), got {dof!r}")


def camera_body_pose(t_map_optical: Pose3D) -> Pose3D:
    """``T_map_body`` of a camera whose optical frame is at ``t_map_optical``."""
    return body_pose_from_optical(t_map_optical)


@dataclass(frozen=True)
class PoseNormalization:
    """Position normalisation ``(p - mean) / scale``, fitted on the training views, stored with the model."""

    dof: int
    position_mean: tuple[float, ...]
    position_scale: float

    def __post_init__(self) -> None:
        check_dof(self.dof)
        mean = tuple(float(v) for v in self.position_mean)
        if len(mean) != position_size(self.dof):
            raise ModelError(
                f"position_mean must have {position_size(self.dof)} values for dof={self.dof}, "
                f"got {len(mean)}"
            )
        if not all(np.isfinite(mean)):
            raise ModelError(f"position_mean must be finite, got {mean}")
        if not (np.isfinite(self.position_scale) and self.position_scale > 0):
            raise ModelError(f"position_scale must be a positive finite number, got {self.position_scale}")
        object.__setattr__(self, "position_mean", mean)
        object.__setattr__(self, "position_scale", float(self.position_scale))

    @classmethod
    def fit(cls, t_map_optical: Sequence[Pose3D], dof: int) -> PoseNormalization:
        """Mean per axis and isotropic RMS scale of the camera positions (scale 1 if they coincide)."""
        check_dof(dof)
        if len(t_map_optical) == 0:
            raise ModelError("cannot fit a pose normalisation on zero views")
        positions = np.array([p.translation[: position_size(dof)] for p in t_map_optical])
        mean = positions.mean(axis=0)
        scale = float(np.sqrt(np.mean((positions - mean) ** 2)))
        return cls(dof, tuple(mean.tolist()), scale if scale > 1e-6 else 1.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "dof": self.dof,
            "position_mean": list(self.position_mean),
            "position_scale": self.position_scale,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "normalization") -> PoseNormalization:
        try:
            return cls(int(data["dof"]), tuple(data["position_mean"]), float(data["position_scale"]))
        except KeyError as exc:
            raise ModelError(f"{source}: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, ModelError):
                raise ModelError(f"{source}: {exc}") from None
            raise ModelError(f"{source}: malformed pose normalisation: {exc}") from None


def encode_targets(t_map_optical: Sequence[Pose3D], norm: PoseNormalization) -> np.ndarray:
    """``(N, 4|7)`` float32 regression targets of views given by their ``T_map_optical``."""
    n_pos = position_size(norm.dof)
    mean = np.asarray(norm.position_mean)
    rows = []
    for pose in t_map_optical:
        body = camera_body_pose(pose)
        position = (body.translation[:n_pos] - mean) / norm.position_scale
        if norm.dof == 3:
            yaw = body.yaw
            rows.append(np.concatenate([position, [np.cos(yaw), np.sin(yaw)]]))
        else:
            rows.append(np.concatenate([position, quaternion_from_rotation(body.rotation)]))
    width = pose_output_size(norm.dof)
    return np.asarray(rows, dtype=np.float32).reshape(-1, width)


@dataclass(frozen=True)
class CameraPosePrediction:
    """Decoded network outputs for a batch: camera body poses in ``map`` and their variances.

    ``position``: ``(N, 3)`` metres (z is 0 for ``dof=3``, where it is not estimated);
    ``rotation``: ``(N, 3, 3)`` body orientation (yaw only for ``dof=3``);
    ``position_variance``: ``(N,)`` m² per axis; ``rotation_variance``: ``(N,)`` rad² (heading
    for ``dof=3``, per axis for ``dof=6``).
    """

    dof: int
    position: np.ndarray
    rotation: np.ndarray
    position_variance: np.ndarray
    rotation_variance: np.ndarray

    def __len__(self) -> int:
        return int(self.position.shape[0])

    @property
    def yaw(self) -> np.ndarray:
        """Heading of each camera body (ENU yaw, rad)."""
        return np.arctan2(self.rotation[:, 1, 0], self.rotation[:, 0, 0])

    def body_pose(self, index: int) -> Pose3D:
        """``T_map_body`` of sample ``index``."""
        return Pose3D(self.rotation[index], self.position[index])

    def base_estimate(
        self,
        index: int,
        stamp_ns: int,
        t_base_optical: Pose3D | None = None,
        source: str = SOURCE_POSENET,
        info: dict[str, Any] | None = None,
    ) -> PoseEstimate:
        """The vehicle ``T_map_base`` of sample ``index`` with its 6x6 covariance.

        ``t_base_optical`` is the camera mounting (:meth:`CameraMounting.base_to_optical`); the
        default is a camera whose body frame coincides with ``base_link``. For ``dof=3`` only
        the planar part of the mounting is used (x, y offset and yaw; the camera is assumed
        level) and z, roll, pitch get the 'unknown' variance.
        """
        mounting = t_base_optical if t_base_optical is not None else T_BODY_OPTICAL
        t_base_body = body_pose_from_optical(mounting)
        var_p = float(self.position_variance[index])
        var_r = float(self.rotation_variance[index])
        extra = {
            "camera_position": self.position[index].tolist(),
            "camera_yaw": float(self.yaw[index]),
            "position_std_m": float(np.sqrt(var_p)),
            "rotation_std_rad": float(np.sqrt(var_r)),
            "dof": self.dof,
        }
        extra.update(info or {})
        if self.dof == 3:
            camera = Pose2D(
                float(self.position[index, 0]), float(self.position[index, 1]), float(self.yaw[index])
            )
            to_base = Pose2D(
                float(t_base_body.translation[0]), float(t_base_body.translation[1]), t_base_body.yaw
            ).inverse()
            base = camera.compose(to_base)
            # d(base position)/d(camera yaw): the lever arm rotates with the heading.
            c, s = np.cos(camera.yaw), np.sin(camera.yaw)
            jac = np.eye(3)
            jac[0, 2] = -s * to_base.x - c * to_base.y
            jac[1, 2] = c * to_base.x - s * to_base.y
            cov3 = jac @ np.diag([var_p, var_p, var_r]) @ jac.T
            return PoseEstimate.planar(stamp_ns, base.x, base.y, base.yaw, cov3, source=source, info=extra)
        t_body_base = t_base_body.inverse()
        base_pose = self.body_pose(index).compose(t_body_base)
        lever = self.rotation[index] @ t_body_base.translation
        jac6 = np.eye(6)
        # World-frame rotation perturbation dphi moves base_link by -[R t]x dphi.
        jac6[:3, 3:] = -_skew(lever)
        cov6 = jac6 @ np.diag([var_p] * 3 + [var_r] * 3) @ jac6.T
        return PoseEstimate(stamp_ns, base_pose, 0.5 * (cov6 + cov6.T), source, info=extra)


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def decode_outputs(
    pose_out: npt.ArrayLike,
    log_var: npt.ArrayLike,
    norm: PoseNormalization,
    variance_scale: tuple[float, float] = (1.0, 1.0),
) -> CameraPosePrediction:
    """Network outputs ``(N, 4|7)`` and ``(N, 2)`` -> camera poses in metres/radians with variances.

    ``variance_scale`` multiplies the (position, rotation) variances: the calibration measured on
    held-out locations at training time (see :func:`geoloc_ros.posenet.train.variance_scale`).
    """
    pose_arr = np.asarray(pose_out, dtype=np.float64)
    lv = np.asarray(log_var, dtype=np.float64)
    width = pose_output_size(norm.dof)
    if pose_arr.ndim != 2 or pose_arr.shape[1] != width:
        raise ModelError(f"pose output must have shape (N, {width}) for dof={norm.dof}, got {pose_arr.shape}")
    if lv.shape != (pose_arr.shape[0], 2):
        raise ModelError(f"log-variance output must have shape ({pose_arr.shape[0]}, 2), got {lv.shape}")
    n = pose_arr.shape[0]
    n_pos = position_size(norm.dof)
    position = np.zeros((n, 3))
    position[:, :n_pos] = pose_arr[:, :n_pos] * norm.position_scale + np.asarray(norm.position_mean)
    lv = np.clip(np.nan_to_num(lv, nan=LOG_VARIANCE_RANGE[1]), *LOG_VARIANCE_RANGE)
    position_variance = np.exp(lv[:, 0]) * norm.position_scale**2 * variance_scale[0]
    if norm.dof == 3:
        yaw = np.arctan2(pose_arr[:, 3], pose_arr[:, 2])
        c, s = np.cos(yaw), np.sin(yaw)
        rotation = np.zeros((n, 3, 3))
        rotation[:, 0, 0], rotation[:, 0, 1] = c, -s
        rotation[:, 1, 0], rotation[:, 1, 1] = s, c
        rotation[:, 2, 2] = 1.0
        rotation_variance = np.exp(lv[:, 1]) * variance_scale[1]
    else:
        rotation = (
            np.stack([_rotation_or_identity(q) for q in pose_arr[:, 3:7]]) if n else np.zeros((0, 3, 3))
        )
        rotation_variance = 4.0 * np.exp(lv[:, 1]) * variance_scale[1]
    return CameraPosePrediction(norm.dof, position, rotation, position_variance, rotation_variance)


def _rotation_or_identity(q: np.ndarray) -> np.ndarray:
    # A degenerate (zero) quaternion output cannot be normalised; report it as a huge-variance identity.
    if not np.all(np.isfinite(q)) or np.linalg.norm(q) < 1e-9:
        return np.eye(3)
    return rotation_from_quaternion(q)


def pose_errors(pred: CameraPosePrediction, t_map_optical: Sequence[Pose3D]) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample planar position error (m) and rotation error (rad) against ground-truth views.

    The rotation error is the heading difference for ``dof=3`` and the full rotation angle for
    ``dof=6``.
    """
    if len(pred) != len(t_map_optical):
        raise ModelError(f"{len(pred)} predictions for {len(t_map_optical)} ground-truth poses")
    bodies = [camera_body_pose(p) for p in t_map_optical]
    truth_xy = np.array([b.translation[:2] for b in bodies]).reshape(-1, 2)
    position_error = np.linalg.norm(pred.position[:, :2] - truth_xy, axis=1)
    if pred.dof == 3:
        truth_yaw = np.array([b.yaw for b in bodies])
        rotation_error = np.abs(wrap_angle(pred.yaw - truth_yaw))
    else:
        rotation_error = np.array(
            [_rotation_angle(pred.rotation[i].T @ bodies[i].rotation) for i in range(len(bodies))]
        )
    return position_error, rotation_error


def _rotation_angle(rotation: np.ndarray) -> float:
    return float(np.arccos(np.clip((np.trace(rotation) - 1.0) / 2.0, -1.0, 1.0)))
