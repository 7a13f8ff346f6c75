"""The map's own error: each panorama's pose in a bundle against the truth (simulator only).

The simulator writes ``panoramas_truth.jsonl`` beside the panorama set it perturbed
(``capture.metadata_error``); ``geoloc evaluate`` reports the map's error from it beside the
localization error, and a refined bundle's error shows what refinement recovered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from geoloc_ros.geo.enu import GeoOrigin, geodetic_to_enu
from geoloc_ros.geo.heading import wrap_angle
from geoloc_ros.gis.panorama_set import PANORAMAS_TRUTH, PanoramaRecord, read_panorama_truth


class PanoramaMap(Protocol):
    """What the map error needs of a map (a ``mapping.map.MapBundle``): evaluation only judges."""

    @property
    def origin(self) -> GeoOrigin: ...

    @property
    def panorama_positions(self) -> np.ndarray: ...

    @property
    def panorama_records(self) -> Sequence[PanoramaRecord]: ...


@dataclass(frozen=True)
class PanoramaPoseErrors:
    """Horizontal position error (m) and heading error (deg, signed) of each panorama with a truth."""

    ids: list[str]
    position_m: np.ndarray
    heading_deg: np.ndarray

    def summary(self) -> dict[str, float | int]:
        if not self.ids:
            return {"panoramas": 0}
        heading = np.abs(self.heading_deg)
        return {
            "panoramas": len(self.ids),
            "position_median_m": round(float(np.median(self.position_m)), 3),
            "position_max_m": round(float(np.max(self.position_m)), 3),
            "heading_median_deg": round(float(np.median(heading)), 3),
            "heading_max_deg": round(float(np.max(heading)), 3),
        }

    def describe(self) -> str:
        s = self.summary()
        if not self.ids:
            return "no panorama with a known truth"
        return (
            f"position median {s['position_median_m']:.2f} m, max {s['position_max_m']:.2f} m; "
            f"heading median {s['heading_median_deg']:.2f}°, max {s['heading_max_deg']:.2f}° "
            f"({s['panoramas']} panoramas)"
        )


def panorama_pose_errors(bundle: PanoramaMap, truth_path: str | Path) -> PanoramaPoseErrors:
    """The bundle's panorama poses against ``panoramas_truth.jsonl`` (panoramas without a truth line
    are left out)."""
    truth = read_panorama_truth(truth_path)
    ids, position, heading = [], [], []
    stated = np.asarray(bundle.panorama_positions, dtype=float)
    for k, record in enumerate(bundle.panorama_records):
        line = truth.get(record.id)
        if line is None:
            continue
        true_enu = geodetic_to_enu(line["lat"], line["lon"], line["alt"], bundle.origin).reshape(3)
        ids.append(record.id)
        position.append(float(np.linalg.norm(stated[k, :2] - true_enu[:2])))
        heading.append(float(np.degrees(wrap_angle(np.radians(record.heading_deg - line["heading_deg"])))))
    return PanoramaPoseErrors(ids, np.array(position), np.array(heading))


def find_panorama_truth(bag: str | Path) -> Path | None:
    """``panoramas_truth.jsonl`` of a simulated data set, found from its drive (``X/drive`` or
    ``X/drive/bag``); None elsewhere."""
    path = Path(bag).resolve()
    for parent in (path, *path.parents[:3]):
        candidate = parent / PANORAMAS_TRUTH
        if candidate.is_file():
            return candidate
    return None
