"""The map's own error against the simulator's panorama truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.evaluation.maperror import find_panorama_truth, panorama_pose_errors
from geoloc_ros.geo.enu import enu_to_geodetic
from geoloc_ros.gis.errors import PanoramaSetError
from geoloc_ros.gis.panorama_set import PANORAMAS_TRUTH
from geoloc_ros.mapping.map import MapBundle


def test_exact_map_has_no_error_and_a_moved_truth_shows(tiny_sim_dir: Path, tiny_map_dir: Path, tmp_path):
    bundle = MapBundle.open(tiny_map_dir, verify="sizes")
    truth = find_panorama_truth(tiny_sim_dir / "drive" / "bag")
    assert truth == tiny_sim_dir / PANORAMAS_TRUTH
    exact = panorama_pose_errors(bundle, truth)
    assert len(exact.ids) == bundle.n_panoramas
    assert exact.summary()["position_max_m"] < 1e-3 and exact.summary()["heading_max_deg"] < 1e-6
    lines = [json.loads(line) for line in truth.read_text().splitlines()]
    first = lines[0]
    moved = np.array([first["x"] + 3.0, first["y"] - 4.0, first["z"]])
    first["lat"], first["lon"], first["alt"] = (float(v) for v in enu_to_geodetic(moved, bundle.origin))
    first["heading_deg"] = (first["heading_deg"] + 359.0) % 360.0  # wraps: -1 degree
    other = tmp_path / PANORAMAS_TRUTH
    other.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    errors = panorama_pose_errors(bundle, tmp_path)
    k = errors.ids.index(first["id"])
    assert errors.position_m[k] == pytest.approx(5.0, abs=1e-3)
    assert errors.heading_deg[k] == pytest.approx(1.0, abs=1e-6)  # stated minus true
    assert errors.summary()["position_max_m"] == pytest.approx(5.0, abs=1e-3)
    assert "max 5.00 m" in errors.describe()
    other.write_text('{"id": "x", "lat": 1}\n')
    with pytest.raises(PanoramaSetError, match=r"panoramas_truth.jsonl:1: invalid panorama truth line"):
        panorama_pose_errors(bundle, other)
    assert find_panorama_truth(tmp_path / "nowhere" / "a" / "b" / "c" / "d") is None
