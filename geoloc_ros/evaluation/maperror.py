"""The map's own error: each panorama's pose in a bundle against the truth (simulator only).

The simulator writes ``panoramas_truth.jsonl`` beside the panorama set it perturbed
(``capture.metadata_error``); ``geoloc evaluate`` reports the map's error from it beside the
localization error, and a refined bundle's error shows what refinement recovered.

The error splits into the panorama set's **common** shift and turn (the best rigid planar motion
from the stated to the true centres) and the **relative** error left after removing it. Matches
between panoramas only see the relative part; the common part is the mean of the metadata errors
(a capture car's drift adds to it) and only absolute references (survey drives) remove it.
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
    """Horizontal position error (m) and heading error (deg, signed) of each panorama with a truth;
    ``stated_xy`` / ``true_xy`` (N, 2) ENU centres."""

    ids: list[str]
    position_m: np.ndarray
    heading_deg: np.ndarray
    stated_xy: np.ndarray
    true_xy: np.ndarray

    def common_motion(self) -> tuple[np.ndarray, float, np.ndarray]:
        """``(shift (2,), turn_deg, relative_m (N,))``: the rigid planar motion taking the stated
        centres closest to the true ones (least squares, about their centroid) and each panorama's
        position error after it."""
        stated, true = np.asarray(self.stated_xy, float), np.asarray(self.true_xy, float)
        a, b = stated - stated.mean(axis=0), true - true.mean(axis=0)
        turn = float(np.arctan2(np.sum(a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]), np.sum(a * b)))
        c, s = np.cos(turn), np.sin(turn)
        moved = a @ np.array([[c, s], [-s, c]])
        shift = true.mean(axis=0) - stated.mean(axis=0)
        return shift, float(np.degrees(turn)), np.linalg.norm(moved - b, axis=1)

    def summary(self) -> dict[str, float | int]:
        if not self.ids:
            return {"panoramas": 0}
        heading = np.abs(self.heading_deg)
        shift, turn, relative = self.common_motion()
        return {
            "panoramas": len(self.ids),
            "position_median_m": round(float(np.median(self.position_m)), 3),
            "position_max_m": round(float(np.max(self.position_m)), 3),
            "heading_median_deg": round(float(np.median(heading)), 3),
            "heading_max_deg": round(float(np.max(heading)), 3),
            "common_shift_m": round(float(np.linalg.norm(shift)), 3),
            "common_turn_deg": round(turn, 3),
            "relative_median_m": round(float(np.median(relative)), 3),
            "relative_max_m": round(float(np.max(relative)), 3),
        }

    def describe(self) -> str:
        s = self.summary()
        if not self.ids:
            return "no panorama with a known truth"
        return (
            f"position median {s['position_median_m']:.2f} m, max {s['position_max_m']:.2f} m; "
            f"heading median {s['heading_median_deg']:.2f}°, max {s['heading_max_deg']:.2f}° "
            f"({s['panoramas']} panoramas); common shift {s['common_shift_m']:.2f} m / turn "
            f"{s['common_turn_deg']:.2f}°, relative error median {s['relative_median_m']:.2f} m, "
            f"max {s['relative_max_m']:.2f} m"
        )


def panorama_pose_errors(bundle: PanoramaMap, truth_path: str | Path) -> PanoramaPoseErrors:
    """The bundle's panorama poses against ``panoramas_truth.jsonl`` (panoramas without a truth line
    are left out)."""
    truth = read_panorama_truth(truth_path)
    ids, position, heading, stated_xy, true_xy = [], [], [], [], []
    stated = np.asarray(bundle.panorama_positions, dtype=float)
    for k, record in enumerate(bundle.panorama_records):
        line = truth.get(record.id)
        if line is None:
            continue
        true_enu = geodetic_to_enu(line["lat"], line["lon"], line["alt"], bundle.origin).reshape(3)
        ids.append(record.id)
        position.append(float(np.linalg.norm(stated[k, :2] - true_enu[:2])))
        stated_xy.append(stated[k, :2])
        true_xy.append(true_enu[:2])
        heading.append(float(np.degrees(wrap_angle(np.radians(record.heading_deg - line["heading_deg"])))))
    return PanoramaPoseErrors(
        ids,
        np.array(position),
        np.array(heading),
        np.array(stated_xy).reshape(-1, 2),
        np.array(true_xy).reshape(-1, 2),
    )


def find_panorama_truth(bag: str | Path) -> Path | None:
    """``panoramas_truth.jsonl`` of a simulated data set, found from its drive (``X/drive`` or
    ``X/drive/bag``); None elsewhere."""
    path = Path(bag).resolve()
    for parent in (path, *path.parents[:3]):
        candidate = parent / PANORAMAS_TRUTH
        if candidate.is_file():
            return candidate
    return None
