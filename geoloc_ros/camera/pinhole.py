"""Pinhole camera model with plumb_bob / rational_polynomial distortion.

Builds from ``sensor_msgs/CameraInfo`` (duck-typed: any object with ``width``, ``height``, ``k``,
``d``, ``distortion_model``), from a horizontal field of view, or from a ROS camera-calibration
YAML. Points are in the optical frame (x right, y down, z forward); pixels are ``(u, v)`` with the
centre of the top-left pixel at ``(0, 0)`` (OpenCV convention).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from geoloc_ros.camera.errors import CameraModelError
from geoloc_ros.config import read_yaml
from geoloc_ros.limits import image_size_problem

# Number of coefficients OpenCV expects for each ROS distortion model.
_DISTORTION_SIZES = {"plumb_bob": 5, "rational_polynomial": 8}


@dataclass(frozen=True)
class PinholeCamera:
    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    distortion_model: str = "plumb_bob"
    distortion: tuple[float, ...] = field(default=(0.0, 0.0, 0.0, 0.0, 0.0))

    def __post_init__(self) -> None:
        if int(self.width) <= 0 or int(self.height) <= 0:
            raise CameraModelError(f"camera size must be positive, got {self.width}x{self.height}")
        problem = image_size_problem(int(self.width), int(self.height))
        if problem is not None:  # geoloc_ros.limits: never build remap tables for absurd sizes
            raise CameraModelError(f"camera {problem}")
        for name in ("fx", "fy", "cx", "cy"):
            value = float(getattr(self, name))
            if not math.isfinite(value):
                raise CameraModelError(f"camera intrinsic {name} must be finite, got {value}")
        if self.fx <= 0 or self.fy <= 0:
            raise CameraModelError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}")
        if self.distortion_model not in _DISTORTION_SIZES:
            raise CameraModelError(
                f"unsupported distortion model {self.distortion_model!r}; "
                f"supported: {', '.join(sorted(_DISTORTION_SIZES))}"
            )
        d = tuple(float(v) for v in self.distortion)
        expected = _DISTORTION_SIZES[self.distortion_model]
        if len(d) == 0:
            d = (0.0,) * expected
        if len(d) != expected:
            raise CameraModelError(
                f"{self.distortion_model} distortion needs {expected} coefficients, got {len(d)}"
            )
        if not all(math.isfinite(v) for v in d):
            raise CameraModelError("distortion coefficients must be finite")
        object.__setattr__(self, "distortion", d)
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_hfov(cls, width: int, height: int, hfov_deg: float) -> PinholeCamera:
        """Distortion-free camera with square pixels and the principal point at the image centre."""
        if not 0.0 < hfov_deg < 180.0:
            raise CameraModelError(f"horizontal field of view must be in (0, 180) deg, got {hfov_deg}")
        f = (width / 2.0) / math.tan(math.radians(hfov_deg) / 2.0)
        return cls(width, height, f, f, (width - 1) / 2.0, (height - 1) / 2.0)

    @classmethod
    def from_camera_info(cls, info: Any) -> PinholeCamera:
        """From a ``sensor_msgs/CameraInfo`` (rclpy or rosbags message, or any look-alike)."""
        k = np.asarray(info.k, dtype=float).reshape(-1)
        if k.size != 9:
            raise CameraModelError(f"CameraInfo.k must have 9 elements, got {k.size}")
        if k[0] == 0.0:
            raise CameraModelError("CameraInfo is uncalibrated (k is all zeros)")
        model = info.distortion_model or "plumb_bob"
        return cls(
            int(info.width),
            int(info.height),
            float(k[0]),
            float(k[4]),
            float(k[2]),
            float(k[5]),
            model,
            tuple(float(v) for v in np.asarray(info.d, dtype=float).reshape(-1)),
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "camera") -> PinholeCamera:
        """From a ROS camera-calibration YAML mapping (``camera_calibration`` / camera_info_manager)."""
        try:
            k = np.asarray(data["camera_matrix"]["data"], dtype=float).reshape(3, 3)
            d = data.get("distortion_coefficients", {}).get("data", [])
            return cls(
                int(data["image_width"]),
                int(data["image_height"]),
                float(k[0, 0]),
                float(k[1, 1]),
                float(k[0, 2]),
                float(k[1, 2]),
                data.get("distortion_model", "plumb_bob"),
                tuple(float(v) for v in d),
            )
        except KeyError as exc:
            raise CameraModelError(f"{source}: missing field {exc.args[0]!r}") from None
        except (TypeError, ValueError) as exc:
            if isinstance(exc, CameraModelError):
                raise CameraModelError(f"{source}: {exc}") from None
            raise CameraModelError(f"{source}: malformed camera calibration: {exc}") from None

    @classmethod
    def load(cls, path: str | Path) -> PinholeCamera:
        p = Path(path)
        data = read_yaml(p, "camera file", CameraModelError)
        if not isinstance(data, dict):
            raise CameraModelError(f"{p}: expected a camera-calibration mapping")
        return cls.from_dict(data, str(p))

    # ---------------------------------------------------------------- views
    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the conventional name
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    @property
    def D(self) -> np.ndarray:  # noqa: N802
        return np.asarray(self.distortion, dtype=float)

    @property
    def is_distorted(self) -> bool:
        return any(v != 0.0 for v in self.distortion)

    @property
    def hfov_deg(self) -> float:
        return math.degrees(2.0 * math.atan2(self.width / 2.0, self.fx))

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``, the order OpenCV wants."""
        return (self.width, self.height)

    def undistorted(self) -> PinholeCamera:
        return replace(self, distortion=())

    def scaled(self, factor: float) -> PinholeCamera:
        """The same camera with the image resized by ``factor`` (pixel-centre convention kept)."""
        w = round(self.width * factor)
        h = round(self.height * factor)
        sx, sy = w / self.width, h / self.height
        return replace(
            self,
            width=w,
            height=h,
            fx=self.fx * sx,
            fy=self.fy * sy,
            cx=(self.cx + 0.5) * sx - 0.5,
            cy=(self.cy + 0.5) * sy - 0.5,
        )

    def to_dict(self, camera_name: str = "camera") -> dict[str, Any]:
        """ROS camera-calibration YAML mapping (what :meth:`from_dict` reads)."""
        k = self.K
        p = np.hstack([k, np.zeros((3, 1))])
        return {
            "image_width": self.width,
            "image_height": self.height,
            "camera_name": camera_name,
            "camera_matrix": {"rows": 3, "cols": 3, "data": [float(v) for v in k.ravel()]},
            "distortion_model": self.distortion_model,
            "distortion_coefficients": {
                "rows": 1,
                "cols": len(self.distortion),
                "data": [float(v) for v in self.distortion],
            },
            "rectification_matrix": {"rows": 3, "cols": 3, "data": [float(v) for v in np.eye(3).ravel()]},
            "projection_matrix": {"rows": 3, "cols": 4, "data": [float(v) for v in p.ravel()]},
        }

    def camera_info_fields(self) -> dict[str, Any]:
        """Field values of a ``sensor_msgs/CameraInfo`` (without header) for this camera."""
        k = self.K
        return {
            "height": self.height,
            "width": self.width,
            "distortion_model": self.distortion_model,
            "d": self.D.copy(),
            "k": k.ravel().copy(),
            "r": np.eye(3).ravel(),
            "p": np.hstack([k, np.zeros((3, 1))]).ravel(),
        }

    # ---------------------------------------------------------------- projection
    def project(self, points_optical: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Project ``(N, 3)`` optical-frame points to pixels (with distortion).

        Returns ``(uv, in_front)`` where ``in_front`` marks points with z > 0; their ``uv`` is
        meaningful, the others are NaN.
        """
        p = np.asarray(points_optical, dtype=float).reshape(-1, 3)
        in_front = p[:, 2] > 1e-9
        uv = np.full((p.shape[0], 2), np.nan)
        if np.any(in_front):
            q = p[in_front]
            if self.is_distorted:
                uv_front, _ = cv2.projectPoints(q, np.zeros(3), np.zeros(3), self.K, self.D)
                uv[in_front] = uv_front.reshape(-1, 2)
            else:
                uv[in_front, 0] = self.fx * q[:, 0] / q[:, 2] + self.cx
                uv[in_front, 1] = self.fy * q[:, 1] / q[:, 2] + self.cy
        return uv, in_front

    def normalized_rays(self, uv: npt.ArrayLike) -> np.ndarray:
        """Undistorted ray directions ``(x, y, 1)`` for ``(N, 2)`` pixels."""
        pix = np.asarray(uv, dtype=float).reshape(-1, 2)
        if self.is_distorted:
            xy = cv2.undistortPoints(pix.reshape(-1, 1, 2), self.K, self.D).reshape(-1, 2)
        else:
            xy = np.column_stack([(pix[:, 0] - self.cx) / self.fx, (pix[:, 1] - self.cy) / self.fy])
        return np.column_stack([xy, np.ones(len(xy))])

    def backproject(self, uv: npt.ArrayLike, depth_z: npt.ArrayLike) -> np.ndarray:
        """3D optical-frame points of pixels at z-depth ``depth_z`` (metres along the optical axis)."""
        rays = self.normalized_rays(uv)
        return rays * np.asarray(depth_z, dtype=float).reshape(-1, 1)

    def pixel_grid_rays(self) -> np.ndarray:
        """``(H, W, 3)`` ray directions ``(x, y, 1)`` of every pixel centre (undistorted model)."""
        u, v = np.meshgrid(np.arange(self.width, dtype=float), np.arange(self.height, dtype=float))
        rays = self.normalized_rays(np.column_stack([u.ravel(), v.ravel()]))
        return rays.reshape(self.height, self.width, 3)

    def rectify_maps(self, target: PinholeCamera | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``cv2.remap`` maps producing an undistorted image in the ``target`` model.

        ``target`` defaults to this camera without distortion; it may differ in size and focal
        length, so undistortion and resizing to the processing model happen in one remap.
        """
        tgt = target if target is not None else self.undistorted()
        if tgt.is_distorted:
            raise CameraModelError("the rectification target camera must be distortion-free")
        return cv2.initUndistortRectifyMap(self.K, self.D, np.eye(3), tgt.K, tgt.size, cv2.CV_32FC1)
