"""The map's own error against the simulator's panorama truth."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.evaluation.maperror import PanoramaPoseErrors, find_panorama_truth, panorama_pose_errors
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


def test_the_error_splits_into_a_common_motion_and_a_relative_part():
    """A set moved as a whole (shift 0.6 m, turn 0.3°) plus one panorama 1 m off: the common motion
    is found, and the relative error is the one panorama's."""
    rng = np.random.default_rng(3)
    true = rng.uniform(-200, 200, (20, 2))
    turn = np.radians(0.3)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    centroid = true.mean(axis=0)
    stated = (true - centroid) @ rotation.T + centroid + np.array([0.36, -0.48])
    stated[4] += [1.0, 0.0]
    errors = PanoramaPoseErrors(
        [f"p{i}" for i in range(20)],
        np.linalg.norm(stated - true, axis=1),
        np.zeros(20),
        stated,
        true,
    )
    shift, turn_deg, relative = errors.common_motion()
    assert turn_deg == pytest.approx(-0.3, abs=0.03)  # the one panorama off pulls a little
    assert np.linalg.norm(shift) == pytest.approx(0.6, abs=0.06)
    assert relative[4] > 0.85 and np.median(relative) < 0.1 and np.sort(relative)[-2] < 0.15
    summary = errors.summary()
    assert summary["relative_max_m"] == pytest.approx(relative.max(), abs=1e-3)
    assert "common shift 0.6" in errors.describe()
