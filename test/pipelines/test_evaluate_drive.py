"""Every source on the tiny drive, evaluated and reported (the engine of `geoloc evaluate` and the demo)."""

import json

import numpy as np
import pytest

from geoloc_ros.evaluation.groundtruth import drive_ground_truth
from geoloc_ros.geometry.sources import (
    SOURCE_BOVW,
    SOURCE_FUSED,
    SOURCE_ORDER,
    SOURCE_POSENET,
)
from geoloc_ros.io.drive import DriveBag
from geoloc_ros.io.estimates import read_estimates
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.pipelines.evaluate_drive import (
    EvaluateConfig,
    evaluate_run,
    run_drive,
    write_run_report,
)
from geoloc_ros.posenet.errors import ModelMapMismatchError
from geoloc_ros.posenet.modelinfo import METADATA_KEY

pytestmark = pytest.mark.slow


def test_all_sources_on_the_tiny_drive(tiny_sim_dir, tiny_map_dir, tiny_posenet_model, tmp_path):
    drive = DriveBag(tiny_sim_dir / "drive")
    bundle = MapBundle.open(tiny_map_dir)
    run = run_drive(drive, bundle, tiny_posenet_model, EvaluateConfig())
    n = drive.n_frames
    assert len(run.frame_stamps_ns) == n
    assert set(run.estimates) == set(SOURCE_ORDER)  # every source of a report
    assert len(run.estimates[SOURCE_POSENET]) == n  # one per frame
    frame_set = set(run.frame_stamps_ns.tolist())
    assert {e.stamp_ns for e in run.estimates[SOURCE_FUSED]} <= frame_set  # fused poses at camera frames
    assert all(e.source == SOURCE_BOVW for e in run.estimates[SOURCE_BOVW])

    result = evaluate_run(run, drive_ground_truth(drive, bundle.origin))
    metrics = {m.source: m for m in result.metrics}
    bovw = metrics[SOURCE_BOVW]
    assert bovw.n_frames == n and bovw.n_localized >= 0.5 * n
    assert bovw.median_error_m < 0.5  # the tiny town is easy for BoVW + PnP
    assert metrics[SOURCE_FUSED].n_localized >= bovw.n_localized

    files = write_run_report(tmp_path / "report", run, result, bundle, {"bag": "tiny"})
    report = (tmp_path / "report" / "report.md").read_text()
    assert "Continuity" in report and "BoVW" in report
    data = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert list(data["sources"]) == list(SOURCE_ORDER)  # in the report order
    logged = read_estimates(tmp_path / "report" / "estimates.jsonl")
    assert len(logged) == sum(len(v) for v in run.estimates.values())
    assert files is not None
    assert np.all(np.diff(run.frame_stamps_ns) > 0)


def test_a_model_of_another_map_is_refused_before_any_work(
    tiny_sim_dir, tiny_map_dir, tiny_posenet_model, tmp_path
):
    """The model <-> map binding holds offline too (geoloc evaluate, the demo), not only in the node."""
    import onnx

    proto = onnx.load(str(tiny_posenet_model))
    entry = next(p for p in proto.metadata_props if p.key == METADATA_KEY)
    entry.value = json.dumps({**json.loads(entry.value), "map_id": "0123456789abcdef"})
    other = tmp_path / "other_map.onnx"
    onnx.save(proto, str(other))
    bundle = MapBundle.open(tiny_map_dir, verify="none")
    with pytest.raises(ModelMapMismatchError) as refused:
        run_drive(DriveBag(tiny_sim_dir / "drive"), bundle, other, EvaluateConfig(max_frames=1))
    assert f"0123456789abcdef vs {bundle.bundle_id}" in str(refused.value)
    assert str(tiny_map_dir) in str(refused.value)
