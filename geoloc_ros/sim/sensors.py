"""Sensor models of the drive: the on-board camera, the RTK receiver, a consumer GPS and the IMU.

Camera: the scene is rendered on an ideal canvas, smeared along each pixel's image motion during the
exposure (motion blur from the real depth and the vehicle's motion), resampled through the lens
distortion, darkened towards the corners (vignetting), scaled by a simple auto exposure and
corrupted with shot and read noise. RTK: the true antenna position plus white noise. GPS: a
first-order Gauss-Markov error (correlated over tens of seconds) plus white noise, with dropouts
during which no fix is published. IMU: true orientation (ENU) with small noise, body rates and
specific force.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.frames import CameraMounting
from geoloc_ros.geometry.pose import Pose3D, quaternion_from_rotation
from geoloc_ros.sim.drive import Trajectory
from geoloc_ros.sim.render import Conditions, distort, ideal_canvas, render_ideal, rotate_rows
from geoloc_ros.sim.scenario import GpsConfig, NuisanceConfig
from geoloc_ros.sim.town import Town


def camera_pose(T_map_base: Pose3D, mounting: CameraMounting) -> Pose3D:
    """``T_map_optical`` of the camera on a vehicle at ``T_map_base``."""
    return T_map_base.compose(mounting.base_to_optical())


FLOW_STEP = 4  # image motion is smooth: compute it on every 4th pixel and interpolate


def _motion_blur(
    image: np.ndarray,
    coarse_depth: np.ndarray,
    canvas: PinholeCamera,
    T_mid: Pose3D,
    T_start: Pose3D,
    T_end: Pose3D,
) -> np.ndarray:
    """Average the image along each pixel's motion between the exposure's start and end poses.

    ``coarse_depth`` is the z-depth on every ``FLOW_STEP``-th canvas pixel (0 = sky).
    """
    h, w = image.shape[:2]
    hc, wc = coarse_depth.shape
    uc, vc = np.meshgrid(
        np.arange(wc, dtype=np.float64) * FLOW_STEP, np.arange(hc, dtype=np.float64) * FLOW_STEP
    )
    rays = np.stack([(uc - canvas.cx) / canvas.fx, (vc - canvas.cy) / canvas.fy, np.ones_like(uc)], axis=-1)
    # Surface points; the sky is far away, so only rotation moves it.
    depth = np.where(coarse_depth <= 0, 1e5, coarse_depth)[..., None]
    world = rotate_rows((rays * depth).reshape(-1, 3), T_mid.rotation) + T_mid.translation
    flows = []
    for pose in (T_start, T_end):
        local = rotate_rows(world - pose.translation, pose.rotation.T)
        z = np.maximum(local[:, 2], 1e-3)
        du = (canvas.fx * local[:, 0] / z + canvas.cx).reshape(hc, wc) - uc
        dv = (canvas.fy * local[:, 1] / z + canvas.cy).reshape(hc, wc) - vc
        flow = np.stack([du, dv], axis=-1).astype(np.float32)
        flows.append(
            cv2.resize(flow, (wc * FLOW_STEP, hc * FLOW_STEP), interpolation=cv2.INTER_LINEAR)[:h, :w]
        )
    extent = float(np.percentile(np.linalg.norm(flows[1] - flows[0], axis=-1), 99))
    if extent < 0.3:
        return image
    n = int(np.clip(math.ceil(extent * 1.5), 3, 12))
    u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    acc = np.zeros_like(image)
    for alpha in np.linspace(0.0, 1.0, n, dtype=np.float32):
        f = flows[0] * (1 - alpha) + flows[1] * alpha
        acc += cv2.remap(
            image, u + f[..., 0], v + f[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
    return acc / n


@dataclass(frozen=True)
class CameraModel:
    """The drive camera: true intrinsics (with distortion when enabled), mounting and nuisances."""

    camera: PinholeCamera
    mounting: CameraMounting
    nuisances: NuisanceConfig
    supersample: int = 1
    view_distance_m: float | None = None

    def capture(
        self,
        town: Town,
        trajectory: Trajectory,
        time_s: float,
        conditions: Conditions,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """The raw BGR uint8 frame exposed around ``time_s`` (mid-exposure)."""
        exposure = self.nuisances.motion_blur_exposure_ms * 1e-3
        t_mid = float(np.clip(time_s, 0.0, trajectory.duration))
        T_mid = camera_pose(trajectory.poses_at(np.array([t_mid]))[0], self.mounting)
        canvas = ideal_canvas(self.camera)
        view = render_ideal(town, canvas, T_mid, conditions, self.supersample, self.view_distance_m)
        image = view.image
        if exposure > 0:
            t0 = float(np.clip(t_mid - exposure / 2, 0.0, trajectory.duration))
            t1 = float(np.clip(t_mid + exposure / 2, 0.0, trajectory.duration))
            T0, T1 = (camera_pose(p, self.mounting) for p in trajectory.poses_at(np.array([t0, t1])))
            image = _motion_blur(image, view.approx_zdepth(FLOW_STEP), canvas, T_mid, T0, T1)
        image, _ = distort(view, self.camera, image, with_depth=False)
        return self.expose(image, rng)

    def expose(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Vignetting, auto exposure and sensor noise on a float image (0-255 scale) -> uint8."""
        nz = self.nuisances
        h, w = image.shape[:2]
        out = image.astype(np.float32, copy=True)
        if nz.vignetting > 0:
            u, v = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            r2 = ((u - self.camera.cx) ** 2 + (v - self.camera.cy) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
            out *= (1.0 - nz.vignetting * r2)[..., None]
        mean = float(out.mean())
        gain = float(np.clip(115.0 / max(mean, 1.0), 0.75, 1.5))
        out *= gain
        if nz.shot_noise > 0 or nz.sensor_noise_sigma > 0:
            sigma = np.sqrt(nz.shot_noise**2 * np.clip(out, 0, 255) + nz.sensor_noise_sigma**2)
            out += rng.standard_normal(out.shape, dtype=np.float32) * sigma
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------ position sensors
@dataclass(frozen=True)
class FixSamples:
    """Position fixes: sample times (s), measured ENU positions, 1-sigma per axis (E, N, U)."""

    times: np.ndarray
    positions: np.ndarray
    sigma: np.ndarray


def rtk_fixes(trajectory: Trajectory, rate_hz: float, sigma_m: float, rng: np.random.Generator) -> FixSamples:
    times = np.arange(0.0, trajectory.duration, 1.0 / rate_hz)
    truth, _ = trajectory.states_at(times)
    noise = rng.normal(0.0, sigma_m, truth.shape) * np.array([1.0, 1.0, 1.5])
    sigma = np.array([sigma_m, sigma_m, 1.5 * sigma_m])
    return FixSamples(times, truth + noise, np.tile(sigma, (len(times), 1)))


def gps_fixes(trajectory: Trajectory, cfg: GpsConfig, rng: np.random.Generator) -> FixSamples:
    """Consumer GPS: Gauss-Markov error with ``cfg.sigma_m`` steady-state sigma, dropouts removed."""
    times = np.arange(0.0, trajectory.duration, 1.0 / cfg.rate_hz)
    truth, _ = trajectory.states_at(times)
    dt = 1.0 / cfg.rate_hz
    phi = math.exp(-dt / cfg.correlation_time_s)
    sigmas = np.array([cfg.sigma_m, cfg.sigma_m, cfg.vertical_sigma_m])
    err = np.empty_like(truth)
    err[0] = rng.normal(0.0, 1.0, 3) * sigmas
    drive = math.sqrt(1.0 - phi**2)
    for k in range(1, len(times)):
        err[k] = phi * err[k - 1] + drive * sigmas * rng.normal(0.0, 1.0, 3)
    measured = truth + err + rng.normal(0.0, cfg.white_noise_m, truth.shape)
    keep = np.ones(len(times), bool)
    if cfg.dropouts_per_minute > 0:
        t = float(rng.exponential(60.0 / cfg.dropouts_per_minute))
        while t < trajectory.duration:
            length = float(rng.uniform(*cfg.dropout_duration_s))
            keep &= ~((times >= t) & (times < t + length))
            t += length + float(rng.exponential(60.0 / cfg.dropouts_per_minute))
    reported = np.sqrt(sigmas**2 + cfg.white_noise_m**2)
    return FixSamples(times[keep], measured[keep], np.tile(reported, (int(keep.sum()), 1)))


@dataclass(frozen=True)
class ImuSamples:
    times: np.ndarray
    quaternions: np.ndarray  # (N, 4) x, y, z, w: base_link in ENU, with noise
    angular_velocity: np.ndarray
    linear_acceleration: np.ndarray
    orientation_sigma_rad: float


def imu_samples(
    trajectory: Trajectory, rate_hz: float, orientation_sigma_deg: float, rng: np.random.Generator
) -> ImuSamples:
    times = np.arange(0.0, trajectory.duration, 1.0 / rate_hz)
    poses = trajectory.poses_at(times)
    sigma = math.radians(orientation_sigma_deg)
    quats = []
    for pose in poses:
        noise = Pose3D.from_xyz_ypr(np.zeros(3), *(rng.normal(0.0, sigma, 3))).rotation
        quats.append(quaternion_from_rotation(pose.rotation @ noise))
    rates, forces = trajectory.body_rates_at(times)
    rates = rates + rng.normal(0.0, 0.002, rates.shape)
    forces = forces + rng.normal(0.0, 0.02, forces.shape)
    return ImuSamples(times, np.asarray(quats), rates, forces, sigma)
