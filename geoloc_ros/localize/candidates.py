"""Which reference views a query frame is matched against.

**Global** (no recent pose): BoVW retrieval with both bags (the bundle's vocabularies and TF-IDF
index), optionally among the views within a radius of a GPS prior, a shortlist re-ranked with the
bundle's co-similarity and topology (:func:`geoloc_ros.bovw.cosimilarity.rerank`), top-K kept.

**Tracking** (a pose predicted from the last ones): retrieval is skipped. Each view near the
predicted camera is scored by how much of what it sees the predicted camera sees alike
(:class:`CovisibilityModel`): a fixed sample of the view's 3D points is projected into the predicted
camera, and each point counts by whether it falls in the image, how similar the two viewing
directions are (SIFT tolerates some 40° of viewpoint change) and how similar its distance is from
both cameras (scale change). This is cheaper than retrieval and more reliable, since it uses the
geometry the map already knows.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from geoloc_ros.bovw.cosimilarity import rerank
from geoloc_ros.bovw.features import FeatureSet
from geoloc_ros.bovw.index import top_k_indices
from geoloc_ros.bovw.retrieval import Retriever
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.localize.config import RetrievalConfig
from geoloc_ros.mapping.map import MapBundle

# A view point whose viewing directions from the two cameras differ by more than this does not count.
_MAX_VIEW_ANGLE_DEG = 60.0
_MIN_DEPTH_M = 0.5


@dataclass(frozen=True)
class Candidates:
    """Views to match, best first, with the score that ranked them."""

    views: np.ndarray  # (k,) int64
    scores: np.ndarray  # (k,) float32
    mode: str  # "global" or "tracking"


def retrieve_candidates(
    retriever: Retriever,
    support: sp.csr_array | None,
    features: FeatureSet,
    config: RetrievalConfig,
    n_views: int,
    subset: np.ndarray | None = None,
) -> Candidates:
    """Top-K views by BoVW score (both bags), re-ranked by topological support when ``support``."""
    if subset is not None and len(subset) == 0:
        return Candidates(np.zeros(0, np.int64), np.zeros(0, np.float32), "global")
    words = retriever.vocabularies.words(features)
    query = retriever.config
    scores, _ = retriever.index.scores(
        words, query.weights, subset, query.max_touched_postings, query.rescore_candidates
    )
    shortlist = top_k_indices(scores, min(max(config.shortlist, config.top_k), len(scores)))
    ids = shortlist.astype(np.int64) if subset is None else np.asarray(subset, np.int64)[shortlist]
    keep = scores[shortlist] > 0
    ids, short_scores = ids[keep], scores[shortlist][keep]
    if support is None or not config.rerank or len(ids) == 0:
        return Candidates(ids[: config.top_k], short_scores[: config.top_k].astype(np.float32), "global")
    all_scores = np.zeros(n_views, dtype=np.float32)
    if subset is None:
        all_scores[:] = scores
    else:
        all_scores[np.asarray(subset, np.int64)] = scores
    ranked = rerank(ids, all_scores, support)
    return Candidates(ranked.view_ids[: config.top_k], ranked.scores[: config.top_k], "global")


class CovisibilityModel:
    """A fixed sample of every view's 3D points and its camera centre (see the module docstring).

    Samples are taken on first use of a view and kept for at most ``max_views`` views (least
    recently used out), so a city-scale bundle costs neither a pass over every view at start-up nor
    memory growing with the map.
    """

    def __init__(self, bundle: MapBundle, samples_per_view: int, max_views: int = 20_000) -> None:
        self._bundle = bundle
        self.samples_per_view = int(samples_per_view)
        self.max_views = int(max_views)
        self._samples: OrderedDict[int, np.ndarray] = OrderedDict()
        self.centres = bundle.views.position

    def samples(self, views: np.ndarray) -> np.ndarray:
        """``(k, samples_per_view, 3)`` float32 sample points of ``views`` (NaN-padded)."""
        out = np.full((len(views), self.samples_per_view, 3), np.nan, dtype=np.float32)
        for k, view in enumerate(np.asarray(views, dtype=np.int64)):
            key = int(view)
            cached = self._samples.get(key)
            if cached is None:
                cached = self._sample(key)
                self._samples[key] = cached
                if len(self._samples) > self.max_views:
                    self._samples.popitem(last=False)
            else:
                self._samples.move_to_end(key)
            out[k, : len(cached)] = cached
        return out

    def _sample(self, view: int) -> np.ndarray:
        points = self._bundle.points(view)
        finite = np.flatnonzero(np.isfinite(points[:, 0]))
        if len(finite) == 0:
            return np.zeros((0, 3), np.float32)
        # Evenly spaced over the features, which the extractor spread over the image.
        chosen = finite[
            np.linspace(0, len(finite) - 1, min(self.samples_per_view, len(finite))).astype(np.int64)
        ]
        return np.asarray(points[chosen], dtype=np.float32)

    def scores(self, predicted: Pose3D, camera: PinholeCamera, views: np.ndarray) -> np.ndarray:
        """Co-visibility score in [0, 1] of each of ``views`` with a camera at ``predicted``
        (T_map_optical)."""
        if len(views) == 0:
            return np.zeros(0, dtype=np.float32)
        points = self.samples(views).astype(np.float64)  # (k, S, 3)
        finite = np.isfinite(points[..., 0])
        from_query = points - predicted.translation
        optical = np.einsum("ksi,ij->ksj", from_query, predicted.rotation)
        z = optical[..., 2]
        with np.errstate(invalid="ignore", divide="ignore"):
            u = camera.fx * optical[..., 0] / z + camera.cx
            v = camera.fy * optical[..., 1] / z + camera.cy
        visible = (
            finite
            & (z > _MIN_DEPTH_M)
            & (u >= 0)
            & (u <= camera.width - 1)
            & (v >= 0)
            & (v <= camera.height - 1)
        )
        from_view = points - np.asarray(self.centres[views])[:, None, :]
        dist_query = np.linalg.norm(from_query, axis=2)
        dist_view = np.linalg.norm(from_view, axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos_angle = np.einsum("ksi,ksi->ks", from_query, from_view) / (dist_query * dist_view)
            scale = np.minimum(dist_query, dist_view) / np.maximum(dist_query, dist_view)
        floor = math.cos(math.radians(_MAX_VIEW_ANGLE_DEG))
        angle_weight = np.clip((cos_angle - floor) / (1.0 - floor), 0.0, 1.0)
        weight = np.where(visible, angle_weight * scale, 0.0)
        count = np.maximum(finite.sum(axis=1), 1)
        return (np.nansum(weight, axis=1) / count).astype(np.float32)


def tracking_candidates(
    model: CovisibilityModel,
    bundle: MapBundle,
    predicted: Pose3D,
    camera: PinholeCamera,
    radius_m: float,
    max_candidates: int,
    min_score: float,
    view_panorama: np.ndarray | None = None,
    min_panoramas: int = 1,
) -> Candidates:
    """The views that best see what a camera at ``predicted`` sees (T_map_optical).

    With ``view_panorama`` (each view's panorama) and ``min_panoramas`` > 1, the best view of each of
    the ``min_panoramas`` best-scoring panoramas comes first, then the others by score: on a map
    whose panoramas are each off by their own error, views of several panoramas let those errors
    average out (:mod:`geoloc_ros.localize.combine`) where the best views alone often all come from
    the nearest panorama.
    """
    nearby = bundle.views_near(predicted.translation[:2], radius_m)
    scores = model.scores(predicted, camera, nearby)
    order = np.lexsort((nearby, -scores))
    order = order[scores[order] >= min_score]
    if view_panorama is not None and min_panoramas > 1 and len(order):
        panoramas = np.asarray(view_panorama)[nearby[order]]
        _, first = np.unique(panoramas, return_index=True)
        leaders = np.sort(first)[:min_panoramas]  # positions in ``order``, best panorama first
        rest = np.setdiff1d(np.arange(len(order)), leaders, assume_unique=True)
        order = order[np.concatenate([leaders, rest])]
    order = order[:max_candidates]
    return Candidates(nearby[order], scores[order], "tracking")
