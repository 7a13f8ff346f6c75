"""Does pure retrieval find the right place? A map bundle's retrieval checked on a recorded drive.

For each camera frame of a drive bag (undistorted into the map views' camera model), the
retrieval ranks the bundle's views; a rank is a *hit* when the view's panorama lies within
``radius_m`` of the vehicle's true position (the drive's ``groundtruth.npz``, see docs/formats.md).
bench/bench_map_retrieval.py reports the top-1 and top-K hit rates of the standard scenario, the
acceptance figures of the map builder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.camera.rectify import Rectifier
from geoloc_ros.io.bag import bag_info, read_messages
from geoloc_ros.io.images import message_to_array
from geoloc_ros.mapping.errors import MapBuildError
from geoloc_ros.mapping.map import MapBundle

IMAGE_TOPICS = ("/camera/image_raw", "/camera/image_raw/compressed")
GROUNDTRUTH_FILE = "groundtruth.npz"
CAMERA_FILE = "camera.yaml"
BAG_DIR = "bag"


@dataclass(frozen=True)
class QueryFrame:
    """A drive frame undistorted into the map views' camera, with the vehicle's true position."""

    index: int  # frame number in the bag
    stamp_ns: int
    image: np.ndarray  # BGR uint8, the map camera's size
    position_enu: np.ndarray  # (3,) base_link position in the map frame


def drive_frames(drive_dir: str | Path, camera: PinholeCamera, step: int = 1) -> Iterator[QueryFrame]:
    """Every ``step``-th frame of ``drive_dir/bag`` that has ground truth, rectified into ``camera``."""
    drive = Path(drive_dir)
    truth_path = drive / GROUNDTRUTH_FILE
    if not truth_path.is_file():
        raise MapBuildError(f"{truth_path}: ground truth not found (a simulated drive has it)")
    with np.load(truth_path) as truth:
        positions = {int(s): p for s, p in zip(truth["stamp_ns"], truth["position_enu"], strict=True)}
    rectify = Rectifier(PinholeCamera.load(drive / CAMERA_FILE), camera)
    bag = drive / BAG_DIR
    topics = [t for t in IMAGE_TOPICS if t in bag_info(bag).topics]
    if not topics:
        raise MapBuildError(f"{bag}: no camera topic among {', '.join(IMAGE_TOPICS)}")
    for index, message in enumerate(read_messages(bag, topics[:1])):
        if index % step or message.stamp_ns not in positions:
            continue
        image = rectify(message_to_array(message.msg, "bgr8"))
        yield QueryFrame(index, message.stamp_ns, image, positions[message.stamp_ns])


def panorama_distances(bundle: MapBundle, ranked_views: np.ndarray, true_xy: np.ndarray) -> np.ndarray:
    """``(F, K)`` horizontal distance from each frame's true position to the panorama of each ranked view."""
    ranked = np.asarray(ranked_views, dtype=np.int64)
    panoramas = np.asarray(bundle.views.pano_index)[ranked]
    pano_xy = np.asarray(bundle.panorama_positions)[panoramas, :2]
    return np.linalg.norm(pano_xy - np.asarray(true_xy, dtype=np.float64)[:, None, :2], axis=-1)


@dataclass(frozen=True)
class HitRates:
    """Share of frames whose top-1 (resp. any of the top-K) view's panorama is within the radius."""

    n_frames: int
    top_k: int
    radius_m: float
    top1: float
    topk: float

    @classmethod
    def of(cls, distances: np.ndarray, radius_m: float) -> HitRates:
        d = np.asarray(distances, dtype=np.float64)
        if d.ndim != 2 or d.shape[0] == 0:
            raise MapBuildError(f"hit rates need (frames, K) distances, got shape {d.shape}")
        within = d <= radius_m
        return cls(len(d), d.shape[1], radius_m, float(within[:, 0].mean()), float(within.any(axis=1).mean()))
