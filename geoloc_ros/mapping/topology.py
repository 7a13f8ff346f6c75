"""The map's view graph: views of the same or of adjacent panoramas, with distances in metres.

Two panoramas are adjacent when the panorama set links them (``links``, in either direction) or
when their centres are closer than ``adjacency_m`` (horizontal distance). Every view of a panorama
is connected to every other view of the same panorama and to every view of each adjacent
panorama; an edge carries the distance between the two views' camera centres (0 between two yaws
of one position). Re-ranking (:func:`geoloc_ros.bovw.cosimilarity.support_graph`) reads it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from scipy.spatial import cKDTree

from geoloc_ros.bovw.cosimilarity import Topology
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)


def adjacent_panorama_pairs(
    positions: np.ndarray, links: Sequence[Sequence[int]], adjacency_m: float, use_links: bool = True
) -> np.ndarray:
    """``(E, 2)`` int64 pairs ``(a, b)`` with ``a < b`` of adjacent panoramas (sorted, unique).

    ``links[i]`` are the indices of the panoramas that panorama ``i`` links to.
    """
    xy = np.asarray(positions, dtype=np.float64).reshape(-1, 3)[:, :2]
    pairs: list[np.ndarray] = [np.zeros((0, 2), dtype=np.int64)]
    if adjacency_m > 0 and len(xy) > 1:
        near = cKDTree(xy).query_pairs(adjacency_m, output_type="ndarray")
        pairs.append(np.asarray(near, dtype=np.int64).reshape(-1, 2))
    if use_links:
        linked = [(i, j) for i, targets in enumerate(links) for j in targets if j != i]
        if linked:
            pairs.append(np.asarray(linked, dtype=np.int64).reshape(-1, 2))
    every = np.concatenate(pairs)
    every = np.sort(every, axis=1)  # (a, b) with a < b
    return np.unique(every, axis=0)


def view_topology(
    view_panorama: np.ndarray, view_positions: np.ndarray, panorama_pairs: np.ndarray, n_panoramas: int
) -> Topology:
    """The view graph of views whose panoramas are ``view_panorama`` (see the module docstring)."""
    pano_of_view = np.asarray(view_panorama, dtype=np.int64)
    positions = np.asarray(view_positions, dtype=np.float64).reshape(-1, 3)
    n_views = len(pano_of_view)
    by_panorama = np.argsort(pano_of_view, kind="stable")
    starts = np.searchsorted(pano_of_view[by_panorama], np.arange(n_panoramas + 1))
    members = [by_panorama[starts[p] : starts[p + 1]] for p in range(n_panoramas)]
    firsts: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    seconds: list[np.ndarray] = [np.zeros(0, dtype=np.int64)]
    distances: list[np.ndarray] = [np.zeros(0, dtype=np.float32)]
    # A panorama with itself, then each adjacent pair: all views of one times all views of the other.
    groups = [(p, p) for p in range(n_panoramas)] + [(int(a), int(b)) for a, b in panorama_pairs]
    for a, b in progress_bar(groups, desc="topology", unit="pair"):
        left, right = members[a], members[b]
        if len(left) == 0 or len(right) == 0:
            continue
        first, second = np.repeat(left, len(right)), np.tile(right, len(left))
        firsts.append(first)
        seconds.append(second)
        distances.append(np.linalg.norm(positions[first] - positions[second], axis=1).astype(np.float32))
    topology = Topology.from_pairs(
        n_views, np.concatenate(firsts), np.concatenate(seconds), np.concatenate(distances)
    )
    logger.info(
        "topology: %d views, %d adjacent panorama pairs, %d edges",
        n_views,
        len(panorama_pairs),
        len(topology.indices) // 2,
    )
    return topology
