"""The per-panorama work of a map build, run in worker processes (local or on a Dask cluster).

:func:`process_panorama` loads one panorama and its depth, synthesizes its rectified and virtual
views (:mod:`geoloc_ros.gis`), extracts features on each view (:mod:`geoloc_ros.bovw`), gives every
keypoint its 3D point in the ``map`` frame from the view's depth, and encodes the view images as
JPEG. It returns a compact :class:`PanoramaResult` (plain arrays and bytes) that the build streams
to its staging area. :func:`quantize_descriptors` is the second distributed pass: words of
descriptors against the trained vocabularies.

Both functions are module-level so that Dask pickles them by reference: workers need geoloc_ros
installed and read access to the panorama set at the same path.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from geoloc_ros.bovw.features import FeatureConfig, FeatureExtractor, FeatureSet
from geoloc_ros.bovw.kinds import feature_kind
from geoloc_ros.bovw.vocabulary import Vocabularies
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.gis.equirect import panorama_body_pose
from geoloc_ros.gis.panorama_set import PanoramaRecord, PanoramaSet
from geoloc_ros.gis.views import SynthesizedView, ViewSynthesisConfig
from geoloc_ros.gis.virtual import (
    StreetAxis,
    VirtualOffsetReport,
    load_panorama_for_views,
    synthesize_panorama_views,
)
from geoloc_ros.mapping.config import ImagesConfig, PointsConfig
from geoloc_ros.mapping.errors import MapBuildError
from geoloc_ros.mapping.map import FEATURE_COLUMNS, ViewKind

logger = logging.getLogger(__name__)

FEATURE_ARRAYS: tuple[str, ...] = tuple(name for name in FEATURE_COLUMNS if name != "words")
"""Per-feature arrays a panorama result carries (all views concatenated); words come later."""


@dataclass(frozen=True)
class PanoramaTask:
    """Everything a worker needs for one panorama (small: no image data)."""

    pano_set_root: str  # absolute path, readable by the worker
    record: PanoramaRecord
    position_enu: tuple[float, float, float]
    axis: StreetAxis
    camera: PinholeCamera
    views: ViewSynthesisConfig
    features: FeatureConfig
    points: PointsConfig
    images: ImagesConfig


@dataclass
class PanoramaResult:
    """The views of one panorama: per-view metadata, concatenated features, JPEG bytes.

    View ``v``'s features are rows ``feature_offsets[v]:feature_offsets[v + 1]`` of every
    feature array, its JPEG bytes ``jpeg[jpeg_offsets[v]:jpeg_offsets[v + 1]]`` (empty when images
    are not stored).
    """

    pano_id: str
    kind: np.ndarray  # (V,) uint8, ViewKind
    offset_m: np.ndarray  # (V,) float32, signed along-street offset (0 for rectified)
    yaw_deg: np.ndarray  # (V,) float32, compass bearing of the optical axis
    pitch_deg: np.ndarray  # (V,) float32
    T_map_optical: np.ndarray  # (V, 4, 4) float64
    hole_ratio: np.ndarray  # (V,) float32
    feature_offsets: np.ndarray  # (V + 1,) int64
    features: dict[str, np.ndarray]  # FEATURE_ARRAYS, concatenated over views
    jpeg: np.ndarray  # (B,) uint8
    jpeg_offsets: np.ndarray  # (V + 1,) int64
    virtual_offsets: list[VirtualOffsetReport] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def n_views(self) -> int:
        return len(self.kind)

    @property
    def n_features(self) -> int:
        return int(self.feature_offsets[-1])


def keypoint_points(view: SynthesizedView, keypoints_xy: np.ndarray, max_depth_step: float) -> np.ndarray:
    """``(N, 3)`` float32 ``map``-frame points of keypoints, from the view's z-depth; NaN without depth.

    The depth is interpolated bilinearly at the keypoint's sub-pixel position when its four
    neighbouring depth pixels are all known and agree within ``max_depth_step`` (relative): one
    surface. Elsewhere (sky, holes, depth edges where foreground and background meet) the point is
    unknown rather than a blend of two surfaces. The point lies on the keypoint's own ray, so it
    reprojects exactly onto the keypoint.
    """
    xy = np.asarray(keypoints_xy, dtype=np.float64).reshape(-1, 2)
    points = np.full((len(xy), 3), np.nan, dtype=np.float32)
    if len(xy) == 0:
        return points
    depth = view.depth
    height, width = depth.shape
    u = np.clip(xy[:, 0], 0.0, width - 1.0)
    v = np.clip(xy[:, 1], 0.0, height - 1.0)
    # The 2x2 neighbourhood's top-left pixel; a keypoint on the last row/column uses the one before.
    c0 = np.clip(np.floor(u).astype(np.intp), 0, max(width - 2, 0))
    r0 = np.clip(np.floor(v).astype(np.intp), 0, max(height - 2, 0))
    c1 = np.minimum(c0 + 1, width - 1)
    r1 = np.minimum(r0 + 1, height - 1)
    fu, fv = u - c0, v - r0
    corners = np.stack([depth[r0, c0], depth[r0, c1], depth[r1, c0], depth[r1, c1]], axis=1)
    corners = corners.astype(np.float64)
    lowest, highest = corners.min(axis=1), corners.max(axis=1)
    ok = (lowest > 0) & (highest <= lowest * (1.0 + max_depth_step))
    if not np.any(ok):
        return points
    w = np.stack([(1 - fu) * (1 - fv), fu * (1 - fv), (1 - fu) * fv, fu * fv], axis=1)
    z = np.sum(corners[ok] * w[ok], axis=1)
    optical = view.camera.backproject(xy[ok], z)
    points[ok] = view.T_map_optical.transform_points(optical).astype(np.float32)
    return points


def feature_mask(view: SynthesizedView, erode_px: int) -> np.ndarray | None:
    """Where features may be detected: away from a virtual view's holes (None: everywhere)."""
    if view.hole_ratio <= 0.0 and np.all(view.valid):
        return None
    if erode_px <= 0:
        return view.valid
    kernel = np.ones((2 * erode_px + 1, 2 * erode_px + 1), np.uint8)
    return cv2.erode(view.valid, kernel, borderType=cv2.BORDER_CONSTANT, borderValue=255)


def encode_jpeg(image: np.ndarray, quality: int, what: str) -> bytes:
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise MapBuildError(f"{what}: JPEG encoding failed")
    return buffer.tobytes()


def _concatenate(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
    return np.concatenate(parts) if parts else empty


def process_panorama(task: PanoramaTask) -> PanoramaResult:
    """Views, features, 3D points and JPEGs of one panorama (see the module docstring)."""
    record = task.record
    timings: dict[str, float] = {}
    start = time.process_time()
    pano_set = PanoramaSet(Path(task.pano_set_root), [record], None)
    image, range_map = load_panorama_for_views(pano_set, record, task.camera, task.views)
    timings["load"] = time.process_time() - start

    start = time.process_time()
    pose = panorama_body_pose(task.position_enu, record.heading_deg, record.pitch_deg, record.roll_deg)
    synthesized = synthesize_panorama_views(
        record.id,
        image,
        range_map,
        pose,
        heading_deg=record.heading_deg,
        config=task.views,
        camera=task.camera,
        axis=task.axis,
    )
    del image, range_map
    views = synthesized.views
    timings["views"] = time.process_time() - start

    extractor = FeatureExtractor(task.features)
    feature_parts: list[FeatureSet] = []
    point_parts: list[np.ndarray] = []
    jpegs: list[bytes] = []
    feature_time = jpeg_time = 0.0
    for view in views:
        t0 = time.process_time()
        features = extractor.extract(view.image, feature_mask(view, task.points.mask_erode_px))
        feature_parts.append(features)
        point_parts.append(keypoint_points(view, features.keypoints_xy, task.points.max_depth_step))
        t1 = time.process_time()
        if task.images.store:
            jpegs.append(encode_jpeg(view.image, task.images.jpeg_quality, f"view {view.spec.view_id}"))
        jpeg_time += time.process_time() - t1
        feature_time += t1 - t0
    timings["features"] = feature_time
    timings["jpeg"] = jpeg_time

    counts = np.array([len(f) for f in feature_parts], dtype=np.int64)
    image_size = (task.camera.width, task.camera.height)
    merged = FeatureSet.concatenate(feature_parts) if feature_parts else FeatureSet.empty(image_size)
    feature_arrays = {name: value for name, value in merged.to_arrays().items() if name != "image_size"}
    feature_arrays["points_map"] = _concatenate(point_parts, np.zeros((0, 3), np.float32))
    jpeg_lengths = np.array([len(b) for b in jpegs] if jpegs else [0] * len(views), dtype=np.int64)
    return PanoramaResult(
        pano_id=record.id,
        kind=np.array([ViewKind[v.kind.upper()] for v in views], dtype=np.uint8),
        offset_m=np.array([v.offset_m for v in views], dtype=np.float32),
        yaw_deg=np.array([v.yaw_deg for v in views], dtype=np.float32),
        pitch_deg=np.array([v.spec.pitch_deg for v in views], dtype=np.float32),
        T_map_optical=np.array([v.T_map_optical.as_matrix() for v in views]).reshape(-1, 4, 4),
        hole_ratio=np.array([v.hole_ratio for v in views], dtype=np.float32),
        feature_offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        features=feature_arrays,
        jpeg=np.frombuffer(b"".join(jpegs), dtype=np.uint8).copy(),
        jpeg_offsets=np.concatenate([[0], np.cumsum(jpeg_lengths)]).astype(np.int64),
        virtual_offsets=list(synthesized.offsets),
        timings_s=timings,
    )


def quantize_descriptors(
    kinds: np.ndarray, descriptors: np.ndarray, vocabularies: Vocabularies
) -> np.ndarray:
    """Word id of every feature in its own bag's vocabulary (int32; -1 for a kind with no bag).

    A distributed task of the build (the vocabularies are scattered to the workers once).
    """
    kinds, descriptors = np.asarray(kinds), np.asarray(descriptors)
    words = np.full(len(kinds), -1, dtype=np.int32)
    for name, vocabulary in vocabularies.by_bag.items():
        chosen = kinds == feature_kind(name).code
        if np.any(chosen):
            words[chosen] = vocabulary.quantize(np.ascontiguousarray(descriptors[chosen]))
    return words
