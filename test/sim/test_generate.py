"""End to end: ``generate`` writes a panorama set, a drive bag and ground truth that agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.cli.main import main as cli_main
from geoloc_ros.geo.enu import geodetic_to_enu
from geoloc_ros.geometry.frames import CameraMounting
from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.gis.panorama_set import PANORAMAS_TRUTH, PanoramaSet, read_panorama_truth
from geoloc_ros.io.atomic import OutputExistsError
from geoloc_ros.io.bag import get_typestore, read_messages
from geoloc_ros.io.images import compressed_msg_to_array, image_msg_to_array
from geoloc_ros.io.tum import read_tum
from geoloc_ros.sim import generate as gen
from geoloc_ros.sim.render import render_pinhole
from geoloc_ros.sim.scenario import Scenario, load_scenario, validate_scenario
from geoloc_ros.sim.sensors import camera_pose

SMALL = {
    "preset": "tiny",
    "capture": {"max_panoramas": 3, "panorama_width": 512, "depth_width": 256},
    "drive": {"max_frames": 10},
}
MICRO = {
    "preset": "tiny",
    "capture": {"max_panoramas": 1, "panorama_width": 256, "depth_width": 128, "gsv_depth": False},
    "drive": {"max_frames": 3},
}


@pytest.fixture(scope="module")
def small() -> Scenario:
    return validate_scenario(SMALL, "small test scenario")


@pytest.fixture(scope="module")
def small_out(small: Scenario, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim") / "out"
    summary = gen.generate(small, out, seed=3, workers=1, progress=False)
    assert summary.panoramas == 3 and summary.frames == 10
    return out


def test_output_layout(small_out: Path, small: Scenario) -> None:
    for rel in (
        "scenario.yaml",
        "summary.json",
        "panoramas/panoramas.jsonl",
        "panoramas/origin.json",
        "drive/bag/metadata.yaml",
        "drive/camera.yaml",
        "drive/camera_mounting.yaml",
        "drive/groundtruth.tum",
        "drive/groundtruth.npz",
    ):
        assert (small_out / rel).is_file(), rel
    assert load_scenario(small_out / "scenario.yaml") == small
    assert json.loads((small_out / "summary.json").read_text())["seed"] == 3
    assert not list(small_out.parent.glob(".*partial*"))


def test_bag_deserializes_with_monotonic_stamps(small_out: Path, small: Scenario) -> None:
    bag = small_out / "drive/bag"
    last: dict[str, int] = {}
    counts: dict[str, int] = {}
    with AnyReader([bag], default_typestore=get_typestore()) as reader:
        for conn, log_time, raw in reader.messages():
            msg = reader.deserialize(raw, conn.msgtype)
            stamp = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            assert stamp == log_time, conn.topic
            assert log_time > last.get(conn.topic, -1), f"{conn.topic} stamps not increasing"
            last[conn.topic] = log_time
            counts[conn.topic] = counts.get(conn.topic, 0) + 1
    b = small.bag
    assert counts[b.image_topic] == counts[b.camera_info_topic] == 10
    assert counts[b.rtk_topic] > 10 and counts[b.imu_topic] > 50 and b.gps_topic in counts
    gt = gen.read_groundtruth(small_out / "drive")
    images = list(read_messages(bag, [b.image_topic]))
    assert [m.stamp_ns for m in images] == gt["stamp_ns"].tolist()
    assert all(m.msg.header.frame_id == "camera_optical" and m.msg.encoding == "bgr8" for m in images)
    info = next(iter(read_messages(bag, [b.camera_info_topic]))).msg
    assert PinholeCamera.from_camera_info(info) == PinholeCamera.load(small_out / "drive/camera.yaml")


def test_groundtruth_reproduces_the_rendering_trajectory(small_out: Path, small: Scenario) -> None:
    plan = gen.plan(small, 3)
    gt = gen.read_groundtruth(small_out / "drive")
    pos, ypr = plan.trajectory.states_at(plan.frame_times)
    np.testing.assert_allclose(gt["position_enu"], pos, atol=1e-9)
    np.testing.assert_allclose(gt["ypr_rad"], ypr, atol=1e-9)
    tum = read_tum(small_out / "drive/groundtruth.tum")
    np.testing.assert_array_equal(tum.stamps_ns, gt["stamp_ns"])
    # The TUM file is planar (docs/formats.md): x, y and yaw of the truth, z = 0.
    np.testing.assert_allclose(tum.positions[:, :2], pos[:, :2], atol=1e-6)
    np.testing.assert_array_equal(tum.positions[:, 2], 0.0)
    x, y, z, w = tum.quaternions_xyzw.T
    np.testing.assert_allclose(x, 0.0)
    np.testing.assert_allclose(y, 0.0)
    yaw = 2.0 * np.arctan2(z, w)
    np.testing.assert_allclose(np.angle(np.exp(1j * (yaw - ypr[:, 0]))), 0.0, atol=1e-8)
    # The RTK fixes in the bag follow the same trajectory within their 2 cm noise.
    origin = plan.origin
    errors = []
    for m in read_messages(small_out / "drive/bag", [small.bag.rtk_topic]):
        enu = geodetic_to_enu(m.msg.latitude, m.msg.longitude, m.msg.altitude, origin)
        truth, _ = plan.trajectory.states_at(np.array([(m.stamp_ns - plan.start_ns) * 1e-9]))
        errors.append(enu - truth[0])
    errors = np.asarray(errors)
    assert np.all(np.abs(errors[:, :2]) < 5 * small.sensors.rtk_sigma_m)
    assert np.sqrt(np.mean(errors[:, :2] ** 2)) == pytest.approx(small.sensors.rtk_sigma_m, rel=0.6)


def test_frames_in_the_bag_match_renders_at_the_groundtruth_pose(small_out: Path, small: Scenario) -> None:
    """A frame correlates with a noise-free render at its ground-truth camera pose, better than with
    renders 0.5 m or 2 degrees away: the ground truth is the pose the frame was rendered from."""
    gt = gen.read_groundtruth(small_out / "drive")
    camera = PinholeCamera.load(small_out / "drive/camera.yaml")
    mounting = CameraMounting.load(small_out / "drive/camera_mounting.yaml")
    plan = gen.plan(small, 3)
    town = gen.town_for_plan(plan)
    conditions = gen.drive_conditions(plan)
    k = 6
    frame = image_msg_to_array(list(read_messages(small_out / "drive/bag", [small.bag.image_topic]))[k].msg)
    grey = frame.mean(axis=2)

    def ncc(base: Pose3D) -> float:
        rendered, _ = render_pinhole(town, camera, camera_pose(base, mounting), conditions)
        a = grey - grey.mean()
        b = rendered.mean(axis=2) - rendered.mean()
        return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))

    base = Pose3D.from_xyz_ypr(gt["position_enu"][k], *gt["ypr_rad"][k])
    true_score = ncc(base)
    assert true_score > 0.9
    shifted = Pose3D.from_xyz_ypr(
        gt["position_enu"][k] + base.rotation @ np.array([0.0, 0.5, 0.0]), *gt["ypr_rad"][k]
    )
    turned = Pose3D.from_xyz_ypr(
        gt["position_enu"][k], gt["ypr_rad"][k][0] + np.radians(2.0), *gt["ypr_rad"][k][1:]
    )
    assert true_score > ncc(shifted) + 0.02
    assert true_score > ncc(turned) + 0.02


def test_panorama_set_validates_and_matches_the_plan(small_out: Path, small: Scenario) -> None:
    panos = PanoramaSet.load(small_out / "panoramas")
    plan = gen.plan(small, 3)
    assert len(panos) == 3
    assert panos.origin.to_dict() == {
        "lat": small.town.origin.lat,
        "lon": small.town.origin.lon,
        "alt": small.town.origin.alt,
    }
    expected = np.array([p.position for p in plan.panoramas])
    np.testing.assert_allclose(panos.positions_enu(), expected, atol=1e-3)
    for record, pose in zip(panos, plan.panoramas, strict=True):
        assert record.heading_deg == pytest.approx(pose.heading_deg)
        assert record.camera_height_m == small.capture.camera_height_m
        image = panos.load_image(record)
        depth = panos.load_depth(record)
        assert image.shape == (256, 512, 3)
        assert depth is not None and depth.shape == (128, 256)
        assert 0.0 < np.median(depth[depth > 0]) < 100.0
        assert record.depth_gsv is not None and (panos.root / record.depth_gsv).is_file()
        assert set(record.links) <= {r.id for r in panos}


def test_existing_output_is_refused_unless_overwrite(tmp_path: Path) -> None:
    micro = validate_scenario(MICRO, "micro")
    out = tmp_path / "out"
    gen.generate(micro, out, seed=1, workers=1, progress=False)
    marker = out / "marker"
    marker.write_text("old")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        gen.generate(micro, out, seed=1, workers=1, progress=False)
    assert marker.exists()
    gen.generate(micro, out, seed=1, workers=1, overwrite=True, progress=False)
    assert not marker.exists() and (out / "drive/bag/metadata.yaml").is_file()


def test_interrupted_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    micro = validate_scenario(MICRO, "micro")

    def interrupted(indices: tuple[int, ...]) -> list:
        raise KeyboardInterrupt

    monkeypatch.setattr(gen, "_render_frames_task", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        gen.generate(micro, out, seed=1, workers=1, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_cli_names_bad_fields_and_refuses_existing_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"preset": "tiny", "drive": {"rate_hz": -1}}))
    assert cli_main(["sim", "--scenario", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "drive.rate_hz" in capsys.readouterr().err
    good = tmp_path / "micro.yaml"
    good.write_text(yaml.safe_dump(MICRO))
    out = tmp_path / "out"
    assert cli_main(["sim", "--scenario", str(good), "--seed", "2", "--out", str(out), "--workers", "1"]) == 0
    assert (out / "panoramas/panoramas.jsonl").is_file()
    assert cli_main(["sim", "--scenario", str(good), "--out", str(out), "--workers", "1"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert cli_main(["sim", "--scenario", str(good), "--out", str(out), "--workers", "1", "--overwrite"]) == 0


def test_same_seed_same_bytes_whatever_the_number_of_workers(tmp_path: Path) -> None:
    micro = validate_scenario(MICRO, "micro")
    gen.generate(micro, tmp_path / "a", seed=5, workers=1, progress=False)
    gen.generate(micro, tmp_path / "b", seed=5, workers=2, progress=False)
    for rel in (
        "drive/groundtruth.npz",
        "panoramas/panoramas.jsonl",
        "panoramas/images/pano_00000.jpg",
        "panoramas/images/pano_00000_depth.png",
    ):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    frames_a = [m.msg.data.tobytes() for m in read_messages(tmp_path / "a/drive/bag", ["/camera/image_raw"])]
    frames_b = [m.msg.data.tobytes() for m in read_messages(tmp_path / "b/drive/bag", ["/camera/image_raw"])]
    assert frames_a == frames_b


def test_a_survey_drive_goes_through_the_same_town_and_streets(tmp_path: Path) -> None:
    """Another drive seed: the same town, panoramas and lane path, another speed profile and noise;
    --drive-only writes the drive alone."""
    tiny = validate_scenario({"preset": "tiny"}, "tiny")
    first, survey = gen.plan(tiny, 4), gen.plan(tiny, 4, drive_seed=9)
    np.testing.assert_array_equal(first.trajectory.path_xy, survey.trajectory.path_xy)
    assert [p.id for p in first.panoramas] == [p.id for p in survey.panoramas]
    for a, b in zip(first.reported, survey.reported, strict=True):
        np.testing.assert_array_equal(a.position, b.position)
    assert first.trajectory.duration != survey.trajectory.duration
    assert gen.plan(tiny, 4, drive_seed=4).trajectory.duration == first.trajectory.duration
    town_a, town_b = gen.town_for_plan(first), gen.town_for_plan(survey)
    np.testing.assert_array_equal(town_a.quads.origin, town_b.quads.origin)
    good = tmp_path / "micro.yaml"
    good.write_text(yaml.safe_dump(MICRO))
    out = tmp_path / "survey"
    args = ["sim", "--scenario", str(good), "--seed", "2", "--drive-seed", "3", "--drive-only"]
    assert cli_main([*args, "--out", str(out), "--workers", "1"]) == 0
    assert not (out / "panoramas").exists() and not (out / PANORAMAS_TRUTH).exists()
    assert (out / "drive/bag/metadata.yaml").is_file() and (out / "drive/groundtruth.npz").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["seed"], summary["drive_seed"], summary["panoramas"]) == (2, 3, 0)
    micro = validate_scenario(MICRO, "micro")
    gt = gen.read_groundtruth(out / "drive")
    pos, _ = gen.plan(micro, 2, drive_seed=3).trajectory.states_at(gen.plan(micro, 2, 3).frame_times)
    np.testing.assert_allclose(gt["position_enu"], pos, atol=1e-9)


def test_compressed_images_in_a_sqlite3_bag(tmp_path: Path) -> None:
    micro = validate_scenario(
        {**MICRO, "bag": {"storage": "sqlite3", "image_transport": "compressed", "distro": "jazzy"}}, "micro"
    )
    out = tmp_path / "out"
    gen.generate(micro, out, seed=1, workers=1, progress=False)
    assert list((out / "drive/bag").glob("*.db3"))
    frames = list(read_messages(out / "drive/bag", ["/camera/image_raw/compressed"], distro="jazzy"))
    assert len(frames) == 3 and frames[0].msg.format == "jpeg"
    image = compressed_msg_to_array(frames[0].msg)
    assert image.shape == (micro.drive.camera.height, micro.drive.camera.width, 3)


REALISTIC_SMALL = {
    "preset": "tiny",
    "capture": {
        "max_panoramas": 4,
        "panorama_width": 256,
        "depth_width": 128,
        "depth": "plane",
        "no_depth_fraction": 0.5,
        "metadata_error": {"position_sigma_m": 1.0, "heading_sigma_deg": 1.5, "drift_sigma_m": 0.5},
    },
    "drive": {"max_frames": 2},
}


def test_metadata_error_plane_depth_and_truth_beside_the_set(tmp_path: Path) -> None:
    scenario = validate_scenario(REALISTIC_SMALL, "realistic test scenario")
    out = tmp_path / "out"
    gen.generate(scenario, out, seed=5, workers=1, progress=False)
    plan = gen.plan(scenario, 5)
    panos = PanoramaSet.load(out / "panoramas")
    truth = read_panorama_truth(out)
    assert not (out / "panoramas" / PANORAMAS_TRUTH).exists()  # never inside the set
    stated = panos.positions_enu()
    true = np.array([[truth[r.id][k] for k in "xyz"] for r in panos])
    np.testing.assert_allclose(true, np.array([p.position for p in plan.panoramas]), atol=1e-3)
    offsets = np.linalg.norm(stated[:, :2] - true[:, :2], axis=1)
    assert np.all(offsets > 1e-3) and np.all(offsets < 6.0)  # the metadata carries the error
    np.testing.assert_allclose(stated[:, 2], true[:, 2], atol=1e-3)  # horizontal only
    headings = np.array([r.heading_deg for r in panos]) - np.array(
        [truth[r.id]["heading_deg"] for r in panos]
    )
    assert np.all(np.abs((headings + 180.0) % 360.0 - 180.0) > 1e-6)
    expected_sigma = float(np.hypot(1.0, 0.5))
    for record, has_depth in zip(panos, plan.has_depth, strict=True):
        assert record.position_sigma_m == pytest.approx(expected_sigma)
        assert record.heading_sigma_deg == pytest.approx(1.5)
        assert record.depth is None  # plane model only
        assert (record.depth_gsv is not None) == bool(has_depth)
        if has_depth:
            depth = panos.load_depth(record)
            assert depth is not None and depth.shape == (256, 512)
    assert 0 < int(plan.has_depth.sum()) < 4  # seed 5 draws both cases


def test_metadata_error_statistics_and_drift() -> None:
    """White and drifting parts have the configured spread; neighbours share the drift."""
    base = validate_scenario({"preset": "standard"}, "standard")
    panoramas = gen.plan(base, 1).panoramas * 20
    for white, drift in ((1.0, 0.0), (0.0, 1.0)):
        scenario = validate_scenario(
            {
                "capture": {
                    "metadata_error": {
                        "position_sigma_m": white,
                        "drift_sigma_m": drift,
                        "heading_sigma_deg": 2.0 * white,
                        "drift_heading_sigma_deg": 2.0 * drift,
                        "drift_correlation_m": 100.0,
                    }
                }
            },
            "test",
        )
        reported = gen._metadata_error(panoramas, scenario, np.random.default_rng(0))
        d = np.array([r.position[:2] - p.position[:2] for r, p in zip(reported, panoramas, strict=True)])
        assert len(d) >= 600
        # Per-axis sigma 1 m: the sample standard deviation within 15 % (far beyond 5 sigma of chance
        # for white noise; the drift's effective sample is smaller but still hundreds of decorrelations).
        assert 0.8 < float(d.std()) < 1.2
        lag1 = float(np.corrcoef(d[:-1, 0], d[1:, 0])[0, 1])
        if drift:
            assert lag1 > 0.5
        else:
            assert abs(lag1) < 0.15
