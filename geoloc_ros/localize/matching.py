"""Descriptor matching of a query frame against candidate reference views.

Two matchers, both view by view:

* :func:`match_views` (global re-localization, no pose known): every query feature against every
  feature of the view (brute force), Lowe's ratio test and mutual nearest neighbour.
* :func:`match_guided` (tracking, a predicted pose known): each view's 3D points are projected into
  the predicted camera and a query feature is compared only with the reference features that land
  within ``radius`` pixels of it. The ratio test then competes only with nearby features, so
  repetitive structures (rows of identical windows) that defeat the global test still match, and
  the cost is a few thousand descriptor distances instead of a full product.

Each candidate view is matched on its own: a query feature's nearest and second-nearest
neighbours are taken **within one view** for Lowe's ratio test. Pooling the views first would
break the test, because the same physical point appears in several overlapping views (a
panorama's rectified view and its virtual views, neighbouring panoramas): its second-nearest
neighbour would be the very same point seen from another view, and true matches would be thrown
away. Each feature kind matches only its own kind (SIFT with SIFT, MSER with MSER).

The distances of all views are computed in one float32 matrix product per feature kind
(``|q|² + |r|² - 2 q·r`` in the uint8 RootSIFT units of :mod:`geoloc_ros.bovw.features`), the
dominant cost of matching; per-view reductions then pick the nearest neighbours. The views'
descriptors are kept as float32 with their squared norms in a small LRU cache
(:class:`ViewCache`): consecutive frames of a drive share most of their candidates.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from geoloc_ros.bovw.features import ROOTSIFT_UINT8_SCALE
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize.config import MatchingConfig
from geoloc_ros.localize.query import QueryFrame
from geoloc_ros.mapping.map import MapBundle


@dataclass(frozen=True)
class ViewData:
    """One reference view's features, ready for matching (arrays of equal length N)."""

    view: int
    descriptors: np.ndarray  # (N, 128) float32
    squared_norms: np.ndarray  # (N,) float32
    kind: np.ndarray  # (N,) uint8, feature kind codes
    keypoints_xy: np.ndarray  # (N, 2) float32, pixels of the map camera
    points_map: np.ndarray  # (N, 3) float32, NaN without depth
    point_rows: np.ndarray  # (P,) rows with a 3D point
    points64: np.ndarray  # (P, 3) float64, those points (projected every tracked frame)

    def __len__(self) -> int:
        return len(self.kind)


class ViewCache:
    """Reference views' :class:`ViewData`, least recently used evicted beyond ``capacity`` views."""

    def __init__(self, bundle: MapBundle, capacity: int) -> None:
        self.bundle = bundle
        self.capacity = capacity
        self._views: OrderedDict[int, ViewData] = OrderedDict()

    def get(self, view: int) -> ViewData:
        view = int(view)
        data = self._views.get(view)
        if data is not None:
            self._views.move_to_end(view)
            return data
        features, points = self.bundle.features(view)
        descriptors = np.asarray(features.descriptors, dtype=np.float32)
        points = np.array(points)
        point_rows = np.flatnonzero(np.isfinite(points[:, 0]))
        data = ViewData(
            view=view,
            descriptors=descriptors,
            squared_norms=np.einsum("ij,ij->i", descriptors, descriptors),
            kind=np.array(features.kind),
            keypoints_xy=np.array(features.keypoints_xy),
            points_map=points,
            point_rows=point_rows,
            points64=points[point_rows].astype(np.float64),
        )
        self._views[view] = data
        while len(self._views) > self.capacity:
            self._views.popitem(last=False)
        return data

    def __len__(self) -> int:
        return len(self._views)


@dataclass(frozen=True)
class Matches:
    """Putative matches between the query and several views (arrays of equal length M).

    ``view_slot`` indexes ``views`` (the candidates, in the order given); ``reference_index`` is the
    row of the feature in its view's :class:`ViewData`; ``distance_ratio`` is nearest / second-nearest
    distance (lower is more distinctive).
    """

    views: np.ndarray  # (k,) int64 view ids
    query_index: np.ndarray  # (M,) int64
    view_slot: np.ndarray  # (M,) int32
    reference_index: np.ndarray  # (M,) int64
    distance_ratio: np.ndarray  # (M,) float32
    query_xy: np.ndarray  # (M, 2) float64
    reference_xy: np.ndarray  # (M, 2) float64
    points_map: np.ndarray  # (M, 3) float64, NaN where the reference feature has no depth

    def __len__(self) -> int:
        return len(self.query_index)

    def per_view(self) -> np.ndarray:
        """Number of matches of each view of ``views``."""
        return np.bincount(self.view_slot, minlength=len(self.views))

    def subset(self, index: np.ndarray) -> Matches:
        return Matches(
            self.views,
            self.query_index[index],
            self.view_slot[index],
            self.reference_index[index],
            self.distance_ratio[index],
            self.query_xy[index],
            self.reference_xy[index],
            self.points_map[index],
        )

    @property
    def has_point(self) -> np.ndarray:
        return np.isfinite(self.points_map[:, 0])


def _empty_matches(views: np.ndarray) -> Matches:
    return Matches(
        views,
        np.zeros(0, np.int64),
        np.zeros(0, np.int32),
        np.zeros(0, np.int64),
        np.zeros(0, np.float32),
        np.zeros((0, 2)),
        np.zeros((0, 2)),
        np.zeros((0, 3)),
    )


def _nearest_two(distances: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: index of the nearest column, its distance, and the second-nearest distance (inf
    when the row has one column). ``distances`` is modified in place and restored."""
    rows = np.arange(distances.shape[0])
    nearest = np.argmin(distances, axis=1)
    best = distances[rows, nearest].copy()
    if distances.shape[1] < 2:
        return nearest, best, np.full_like(best, np.inf)
    distances[rows, nearest] = np.inf
    second = distances.min(axis=1)
    distances[rows, nearest] = best
    return nearest, best, second


def match_views(query: QueryFrame, views: Sequence[ViewData], config: MatchingConfig) -> Matches:
    """Ratio-test (and mutual nearest neighbour) matches of ``query`` in every view of ``views``."""
    view_ids = np.array([v.view for v in views], dtype=np.int64)
    features = query.features
    parts: list[tuple[np.ndarray, int, np.ndarray, np.ndarray]] = []
    ratio_sq = np.float32(config.ratio**2)
    for kind in np.unique(features.kind):  # each kind matches its own kind, in code order
        query_rows = np.flatnonzero(features.kind == kind)
        if len(query_rows) == 0:
            continue
        q = features.descriptors[query_rows].astype(np.float32)
        q_norms = np.einsum("ij,ij->i", q, q)
        ref_rows = [np.flatnonzero(v.kind == kind) for v in views]
        counts = np.array([len(r) for r in ref_rows], dtype=np.int64)
        if counts.sum() == 0:
            continue
        refs = np.concatenate([v.descriptors[r] for v, r in zip(views, ref_rows, strict=True)])
        ref_norms = np.concatenate([v.squared_norms[r] for v, r in zip(views, ref_rows, strict=True)])
        # One product for every view of this kind: the dominant cost of matching.
        distances = q_norms[:, None] + ref_norms[None, :] - 2.0 * (q @ refs.T)
        starts = np.concatenate([[0], np.cumsum(counts)])
        for slot, rows in enumerate(ref_rows):
            if len(rows) == 0:
                continue
            block = distances[:, starts[slot] : starts[slot + 1]]
            nearest, best, second = _nearest_two(block)
            keep = best < ratio_sq * second
            if config.mutual:
                keep &= np.argmin(block, axis=0)[nearest] == np.arange(len(query_rows))
            chosen = np.flatnonzero(keep)
            ratio = np.sqrt(np.maximum(best[chosen], 0.0) / np.maximum(second[chosen], 1e-12))
            parts.append((query_rows[chosen], slot, rows[nearest[chosen]], ratio.astype(np.float32)))
    if not parts:
        return _empty_matches(view_ids)
    query_index = np.concatenate([p[0] for p in parts]).astype(np.int64)
    view_slot = np.concatenate([np.full(len(p[0]), p[1], np.int32) for p in parts])
    reference_index = np.concatenate([p[2] for p in parts]).astype(np.int64)
    ratio = np.concatenate([p[3] for p in parts])
    reference_xy = np.empty((len(query_index), 2))
    points = np.empty((len(query_index), 3))
    for slot, view in enumerate(views):
        at = view_slot == slot
        reference_xy[at] = view.keypoints_xy[reference_index[at]]
        points[at] = view.points_map[reference_index[at]]
    return Matches(
        view_ids,
        query_index,
        view_slot,
        reference_index,
        ratio,
        features.keypoints_xy[query_index].astype(np.float64),
        reference_xy,
        points,
    )


# Squared distances of uint8 RootSIFT descriptors are below 2**20 (norms of about 512): a group id
# times this stride plus a distance sorts by group, then distance, in one float64 argsort.
_GROUP_STRIDE = float(2**21)


def _nearest_in_groups(group: np.ndarray, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each distinct ``group`` value (ascending): the position of its smallest ``distance`` and
    the group's second-smallest distance (inf for a group of one)."""
    order = np.argsort(group.astype(np.float64) * _GROUP_STRIDE + distance)
    sorted_group = group[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_group[1:] != sorted_group[:-1]]))
    following = np.minimum(starts + 1, len(order) - 1)
    has_second = (starts + 1 < len(order)) & (sorted_group[following] == sorted_group[starts])
    second = np.where(has_second, distance[order[following]], np.inf).astype(np.float32)
    return order[starts], second


def match_guided(
    query: QueryFrame,
    views: Sequence[ViewData],
    predicted: Pose3D | Sequence[Pose3D],
    camera: PinholeCamera,
    radius_px: float,
    config: MatchingConfig,
) -> Matches:
    """Matches of ``query`` with the 3D points of ``views`` near their projections into a camera at
    ``predicted`` (T_map_optical, in ``camera``; or one such pose per view, e.g. the prediction
    moved into each view's panorama's stated frame): see the module docstring. Only reference
    features with a 3D point take part; the ratio test and the mutual check are taken within each
    view, and a candidate alone in its window must also be closer than ``config.guided_max_distance``."""
    view_ids = np.array([v.view for v in views], dtype=np.int64)
    features = query.features
    if len(features) == 0 or not views:
        return _empty_matches(view_ids)
    cameras = [predicted] * len(views) if isinstance(predicted, Pose3D) else list(predicted)
    if len(cameras) != len(views):
        raise ValueError(f"match_guided: {len(cameras)} predicted poses for {len(views)} views")
    # Reference features with a point, projected (all views together).
    slot_parts, row_parts, uv_parts = [], [], []
    for slot, view in enumerate(views):
        predicted_camera = cameras[slot]
        rows = view.point_rows
        optical = np.einsum(
            "ni,ij->nj", view.points64 - predicted_camera.translation, predicted_camera.rotation
        )
        z = optical[:, 2]
        front = z > 0.5
        rows, optical, z = rows[front], optical[front], z[front]
        uv = np.column_stack(
            [camera.fx * optical[:, 0] / z + camera.cx, camera.fy * optical[:, 1] / z + camera.cy]
        )
        inside = (
            (uv[:, 0] > -radius_px)
            & (uv[:, 0] < camera.width + radius_px)
            & (uv[:, 1] > -radius_px)
            & (uv[:, 1] < camera.height + radius_px)
        )
        slot_parts.append(np.full(int(inside.sum()), slot, np.int32))
        row_parts.append(rows[inside])
        uv_parts.append(uv[inside])
    ref_slot = np.concatenate(slot_parts)
    ref_row = np.concatenate(row_parts)
    if len(ref_row) == 0:
        return _empty_matches(view_ids)
    ref_uv = np.concatenate(uv_parts)
    pairs = cKDTree(ref_uv).sparse_distance_matrix(
        cKDTree(features.keypoints_xy.astype(np.float64)), radius_px, output_type="ndarray"
    )
    ref_i = pairs["i"].astype(np.int64)
    query_j = pairs["j"].astype(np.int64)
    ref_kind = np.empty(len(ref_row), np.uint8)
    for slot, view in enumerate(views):
        at = ref_slot == slot
        ref_kind[at] = view.kind[ref_row[at]]
    same_kind = ref_kind[ref_i] == features.kind[query_j]
    ref_i, query_j = ref_i[same_kind], query_j[same_kind]
    if len(ref_i) == 0:
        return _empty_matches(view_ids)
    # Descriptor distances of the pairs only.
    ref_desc = np.empty((len(ref_i), features.descriptors.shape[1]), np.float32)
    ref_norm = np.empty(len(ref_i), np.float32)
    pair_slot = ref_slot[ref_i]
    for slot, view in enumerate(views):
        at = pair_slot == slot
        rows = ref_row[ref_i[at]]
        ref_desc[at] = view.descriptors[rows]
        ref_norm[at] = view.squared_norms[rows]
    q = features.descriptors[query_j].astype(np.float32)
    distance = np.einsum("ij,ij->i", q, q) + ref_norm - 2.0 * np.einsum("ij,ij->i", q, ref_desc)
    # Per (view, query feature): nearest and second-nearest reference within the window.
    best, second_distance = _nearest_in_groups(pair_slot.astype(np.int64) * len(features) + query_j, distance)
    keep = distance[best] < np.float32(config.ratio**2) * second_distance
    # A lone candidate passes any ratio test: it must be close in absolute terms instead.
    lone = ~np.isfinite(second_distance)
    keep &= ~lone | (distance[best] < np.float32((config.guided_max_distance * ROOTSIFT_UINT8_SCALE) ** 2))
    if config.mutual:
        # The reference feature's own nearest query feature in the window must be this one.
        ref_best, _ = _nearest_in_groups(ref_i, distance)
        nearest_query = np.full(len(ref_row), -1, np.int64)
        nearest_query[ref_i[ref_best]] = query_j[ref_best]
        keep &= nearest_query[ref_i[best]] == query_j[best]
    chosen = best[keep]
    if len(chosen) == 0:
        return _empty_matches(view_ids)
    slots = pair_slot[chosen]
    rows = ref_row[ref_i[chosen]]
    reference_xy = np.empty((len(chosen), 2))
    points = np.empty((len(chosen), 3))
    for slot, view in enumerate(views):
        at = slots == slot
        reference_xy[at] = view.keypoints_xy[rows[at]]
        points[at] = view.points_map[rows[at]]
    ratio = np.sqrt(np.maximum(distance[chosen], 0.0) / np.maximum(second_distance[keep], 1e-12))
    query_index = query_j[chosen]
    return Matches(
        view_ids,
        query_index,
        slots.astype(np.int32),
        rows.astype(np.int64),
        np.minimum(ratio, 1.0).astype(np.float32),
        features.keypoints_xy[query_index].astype(np.float64),
        reference_xy,
        points,
    )
