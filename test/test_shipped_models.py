"""The models shipped in models/ load without torch and belong to the town `geoloc demo` simulates."""

from __future__ import annotations

import numpy as np
import pytest

from geoloc_ros.cli.demo import SHIPPED_MODEL, SHIPPED_MODEL_TOWN
from geoloc_ros.mapping.map import map_content_id
from geoloc_ros.posenet.errors import ModelMapMismatchError
from geoloc_ros.posenet.inference import PoseNetPredictor, read_model_info
from geoloc_ros.sim.generate import plan
from geoloc_ros.sim.scenario import load_scenario


def test_shipped_demo_posenet_is_small_fits_the_demo_town_and_predicts(repo_root) -> None:
    path = repo_root / SHIPPED_MODEL
    if not path.is_file():
        pytest.skip(f"{path} is not in this checkout")
    assert path.stat().st_size < 10 * 2**20, "models/ is for a few MB"
    info = read_model_info(path)
    scenario_name, _seed = SHIPPED_MODEL_TOWN
    town_origin = load_scenario(scenario_name).town.origin.geo_origin()
    model_origin = info.map_origin
    assert model_origin is not None
    assert (model_origin.lat_deg, model_origin.lon_deg) == pytest.approx(
        (town_origin.lat_deg, town_origin.lon_deg), abs=1e-9
    )
    # It records the demo map's id (the same for every build of that town's panoramas): a map of
    # another simulated town, at the same default origin, is refused.
    scenario = load_scenario(scenario_name)
    town = plan(scenario, _seed)
    demo_id = map_content_id(
        town_origin, [p.id for p in town.panoramas], [p.position for p in town.panoramas]
    )
    assert info.metadata.map_id == demo_id
    tiny = plan(load_scenario("tiny"), 1)
    tiny_id = map_content_id(
        town_origin, [p.id for p in tiny.panoramas], [p.position for p in tiny.panoramas]
    )
    with pytest.raises(ModelMapMismatchError, match=f"map id {demo_id} vs {tiny_id}"):
        info.check_map(tiny_id, town_origin, "the tiny town")
    assert "trained on the demo town" in info.check_map(demo_id, town_origin, "the demo town")
    predictor = PoseNetPredictor(path, providers="cpu", intra_op_threads=1, warmup_runs=0)
    frame = np.random.default_rng(0).integers(0, 255, (info.camera.height, info.camera.width, 3), np.uint8)
    estimate = predictor.predict(frame, stamp_ns=1)
    assert np.all(np.isfinite(estimate.position)) and np.isfinite(estimate.yaw)
    assert np.all(np.linalg.eigvalsh(estimate.planar_covariance) > 0)
