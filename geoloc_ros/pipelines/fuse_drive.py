"""Run the fusion filter over recorded measurement streams (offline evaluation, benchmarks).

:func:`fuse_offline` processes measurements in stamp order and asks for the fused pose at each
output stamp (the camera frames) once every measurement stamped at or before it has been added.
Because the filter re-orders late measurements within its history, this is what a live node
produces when measurements arrive within ``history_s`` of their stamps.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from geoloc_ros.fusion.config import FusionConfig
from geoloc_ros.fusion.filter import FusionDiagnostics, Measurement, PlanarFusionFilter
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.geometry.estimate import PoseEstimate
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FusionRun:
    """Fused estimates (one per output stamp at which the filter had a pose) and final counters."""

    estimates: list[PoseEstimate]
    diagnostics: FusionDiagnostics


def fuse_offline(
    measurements: Iterable[Measurement],
    output_stamps_ns: Sequence[int] | np.ndarray,
    config: FusionConfig | None = None,
    origin: GeoOrigin | None = None,
) -> FusionRun:
    """Fuse ``measurements`` and return the fused pose at each of ``output_stamps_ns``.

    Measurements are sorted by stamp (stable, so equal stamps keep their given order); output
    stamps are sorted too. ``origin`` is needed only for :class:`~geoloc_ros.fusion.GpsFix` items.
    """
    ordered = sorted(measurements, key=lambda m: m.stamp_ns)
    outputs = np.sort(np.asarray(output_stamps_ns, dtype=np.int64))
    fusion = PlanarFusionFilter(config, origin)
    estimates: list[PoseEstimate] = []
    next_measurement = 0
    for stamp in progress_bar(outputs.tolist(), desc="fusion", unit="frame"):
        while next_measurement < len(ordered) and ordered[next_measurement].stamp_ns <= stamp:
            fusion.add(ordered[next_measurement])
            next_measurement += 1
        estimate = fusion.estimate_at(stamp)
        if estimate is not None:
            estimates.append(estimate)
    for measurement in ordered[next_measurement:]:
        fusion.add(measurement)
    logger.info("fused %d of %d output stamps", len(estimates), outputs.size)
    return FusionRun(estimates, fusion.diagnostics)
