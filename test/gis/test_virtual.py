"""Virtual views: compared with exact renders of an analytic street at the virtual poses."""

from __future__ import annotations

import logging
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.geo.enu import GeoOrigin, enu_to_geodetic
from geoloc_ros.gis.equirect import panorama_body_pose
from geoloc_ros.gis.errors import ViewSynthesisError
from geoloc_ros.gis.panorama_set import PanoramaRecord, PanoramaSet, PanoramaSetWriter
from geoloc_ros.gis.views import ViewCameraConfig, ViewSynthesisConfig, view_specs
from geoloc_ros.gis.virtual import (
    PanoramaPoints,
    PanoramaViews,
    StreetAxis,
    fill_cracks,
    hole_ratio_table,
    load_panorama_for_views,
    offset_is_blocked,
    render_virtual_view,
    street_axes,
    street_axis,
    synthesize_panorama_views,
    warp_grid_width,
    warp_points_source,
)

PANO_WIDTH = 1536
VIEW_W, VIEW_H = 240, 180
# Bound of the done-when item: colour PSNR of a virtual view against the exact render at its pose,
# holes excluded. Measured 30.1-47.7 dB over the 24 views of this test; the texture of the far
# ground, sampled differently by the panorama and by the direct render, keeps the views along the
# street near 30 dB.
PSNR_BOUND_DB = 28.0


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    diff = a.astype(float)[mask] - b.astype(float)[mask]
    return 10.0 * math.log10(255.0**2 / np.mean(diff**2))


@pytest.fixture(scope="module")
def scene_views(street_scene):
    image, ranges = street_scene.render_panorama(np.zeros(3), street_scene.bearing_deg, PANO_WIDTH)
    config = ViewSynthesisConfig(camera=ViewCameraConfig(width=VIEW_W, height=VIEW_H))
    pose = panorama_body_pose(np.zeros(3), street_scene.bearing_deg)
    neighbours = np.array([10.0 * street_scene.along, -12.0 * street_scene.along])
    axis = street_axis(np.zeros(3), street_scene.bearing_deg, linked_positions=neighbours)
    result = synthesize_panorama_views(
        "p", image, ranges, pose, heading_deg=street_scene.bearing_deg, config=config, axis=axis
    )
    return image, ranges, pose, config, result


def render_truth(street_scene, view):
    cam = view.camera
    return street_scene.render_pinhole(
        view.T_map_optical.translation, view.yaw_deg, cam.width, cam.height, cam.fx, cam.cx, cam.cy
    )


def test_virtual_views_match_exact_renders_at_their_poses(street_scene, scene_views) -> None:
    result = scene_views[-1]
    assert [r.status for r in result.offsets] == ["rendered", "rendered"]
    assert len(result.virtual) == 24 and len(result.rectified) == 12
    for view in result.virtual:
        # The pose, derived independently: 4 m along the street, levelled, looking along yaw.
        expected_position = view.offset_m * street_scene.along
        np.testing.assert_allclose(view.T_map_optical.translation, expected_position, atol=1e-9)
        y = math.radians(view.yaw_deg)
        np.testing.assert_allclose(
            view.T_map_optical.rotation[:, 2], [math.sin(y), math.cos(y), 0.0], atol=1e-12
        )
        truth, z_truth = render_truth(street_scene, view)
        valid = view.valid > 0
        assert psnr(view.image, truth, valid) >= PSNR_BOUND_DB, view.spec.view_id
        large_errors = np.abs(view.image.astype(int) - truth.astype(int)).max(axis=-1) > 40
        assert large_errors[valid].mean() < 0.03, view.spec.view_id  # only object outlines
        assert view.hole_ratio < 0.05
        assert np.all(view.image[~valid] == 0)
        # z-depth of the warped surfaces agrees with the truth; sky has depth 0.
        known = view.depth > 0
        assert np.all(valid[known])
        both = known & (z_truth > 0)
        rel = np.abs(view.depth[both] - z_truth[both]) / z_truth[both]
        assert np.median(rel) < 0.01 and np.percentile(rel, 98) < 0.05
        sky = z_truth == 0
        if sky.sum() > 100:
            assert np.mean(valid[sky]) > 0.99
            assert np.mean(known[sky]) < 0.02  # a surface outline may spill one pixel into the sky
    assert sum((render_truth(street_scene, v)[1] == 0).sum() > 100 for v in result.virtual) >= 8


def test_disocclusions_stay_holes_and_cracks_are_filled(street_scene, scene_views) -> None:
    _, _, _, _, result = scene_views
    forward = next(v for v in result.virtual if v.offset_m == 4.0 and v.yaw_deg == pytest.approx(70.0))
    _, z_truth = render_truth(street_scene, forward)
    # Pixels whose true surface point the panorama cannot see (hidden behind the panel or pole).
    rows, cols = np.nonzero(z_truth > 0)
    rays = forward.camera.normalized_rays(np.column_stack([cols, rows]))
    points = forward.T_map_optical.transform_points(rays * z_truth[rows, cols][:, None])
    distance = np.linalg.norm(points, axis=1)
    seen_from_panorama, _ = street_scene.trace(np.zeros(3), points / distance[:, None])
    hidden = seen_from_panorama < distance * 0.97
    assert hidden.sum() > 300  # the scene has real disocclusions
    hole = forward.valid[rows, cols] == 0
    assert hole[hidden].mean() > 0.9
    # Everything else is filled: cracks from magnification never survive as holes.
    assert hole[~hidden].mean() < 0.01
    # Side views have no disocclusions at all, only magnified ground and walls.
    side = next(v for v in result.virtual if v.offset_m == 4.0 and v.yaw_deg == pytest.approx(160.0))
    assert side.hole_ratio < 0.002


def test_discarding_and_the_hole_ratio_table(street_scene, scene_views, caplog) -> None:
    image, ranges, pose, config, result = scene_views
    strict = config.model_copy(update={"max_hole_ratio": 0.01})
    axis = StreetAxis(street_scene.along, -street_scene.along, None, 3.0, "links")
    caplog.set_level(logging.DEBUG, logger="geoloc_ros.gis.virtual")
    strict_result = synthesize_panorama_views(
        "p", image, ranges, pose, heading_deg=street_scene.bearing_deg, config=strict, axis=axis
    )
    rendered = next(r for r in result.offsets if r.offset_m == 4.0)
    expected_discarded = sum(ratio > 0.01 for ratio in rendered.hole_ratios)
    assert expected_discarded > 0
    assert [r.status for r in strict_result.offsets] == ["beyond_neighbour", "rendered"]
    assert strict_result.offsets[1].discarded == expected_discarded
    assert len(strict_result.virtual) == 12 - expected_discarded
    assert all(v.hole_ratio <= 0.01 for v in strict_result.virtual)
    assert sum("discarded p@+4.0m" in m for m in caplog.messages) == expected_discarded

    table = hole_ratio_table([result, strict_result], null_pixel_threshold=0.01)
    assert [row.offset_m for row in table] == [-4.0, 4.0]
    back, ahead = table
    assert (back.positions, back.skipped_positions, back.views) == (2, 1, 12)
    assert (ahead.positions, ahead.views, ahead.discarded) == (2, 24, expected_discarded)
    assert ahead.views_with_null_pixels == 2 * expected_discarded
    assert ahead.ratio_with_null_pixels == pytest.approx(2 * expected_discarded / 24)
    assert 0 < ahead.mean_hole_ratio < 0.05


def test_blocked_offsets(street_scene, scene_views) -> None:
    image, ranges, pose, config, _ = scene_views
    left = np.cross([0.0, 0.0, 1.0], street_scene.along)
    assert offset_is_blocked(ranges, pose, left, 8.0, 0.5)  # the wall is 8 m to the left
    assert offset_is_blocked(ranges, pose, left, 7.8, 0.5)
    assert not offset_is_blocked(ranges, pose, left, 6.0, 0.5)
    assert not offset_is_blocked(ranges, pose, street_scene.along, 8.0, 0.5)
    sideways = StreetAxis(left, -left, None, None, "heading")
    small = config.model_copy(update={"num_yaws": 1, "virtual_offsets_m": (9.0,)})
    result = synthesize_panorama_views(
        "p", image, ranges, pose, heading_deg=70.0, config=small, axis=sideways
    )
    assert [r.status for r in result.offsets] == ["blocked"] and not result.virtual
    assert hole_ratio_table([result])[0].invalid_positions == 1


def test_no_depth_gives_rectified_views_only(scene_views) -> None:
    image, _, pose, config, _ = scene_views
    small = config.model_copy(update={"num_yaws": 2})
    result = synthesize_panorama_views("p", image, None, pose, heading_deg=70.0, config=small)
    assert len(result.rectified) == 2 and not result.virtual
    assert [r.status for r in result.offsets] == ["no_depth", "no_depth"]
    spec = view_specs("p", "virtual", 4.0, [4.0, 0.0, 0.0], [0.0])[0]
    with pytest.raises(ViewSynthesisError, match="needs the panorama's range map"):
        render_virtual_view(spec, small.camera.pinhole(), image, None, pose, config=small)


# ---------------------------------------------------------------------------- crack filling
def test_fill_cracks_fills_thin_gaps_of_one_surface_only() -> None:
    rows, cols = np.mgrid[0:40, 0:40].astype(np.float32)
    plane = 1.0 / (0.1 + 0.002 * cols + 0.001 * rows)  # a plane: inverse depth is affine
    depth = plane.copy()
    depth[:, 10] = 0.0  # 1-px crack
    depth[20, 5:7] = 0.0  # 2-px crack
    depth[30, 30] = 200.0  # a far point leaking through the surface
    depth[2:12, 20:30] = 0.0  # a 10x10 disocclusion
    filled = fill_cracks(depth, max_gap_px=2, max_depth_step=0.15)
    np.testing.assert_allclose(filled[:, 10], plane[:, 10], rtol=1e-5)
    np.testing.assert_allclose(filled[20, 5:7], plane[20, 5:7], rtol=1e-5)
    assert filled[30, 30] == pytest.approx(plane[30, 30], rel=1e-5)
    assert np.all(filled[4:10, 22:28] == 0)  # the inside of the big hole stays empty
    # A gap between two surfaces at different depths is an edge, not a crack.
    edge = np.full((5, 9), 10.0, dtype=np.float32)
    edge[:, 5:] = 20.0
    edge[:, 4] = 0.0
    assert np.all(fill_cracks(edge, 2, 0.15)[:, 4] == 0)
    assert np.array_equal(fill_cracks(depth, 0, 0.15), depth)


# ---------------------------------------------------------------------------- street direction
def test_street_axis_from_links_neighbours_and_heading() -> None:
    here = np.array([100.0, 50.0, 2.0])
    east, north = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    # Heading north-east; links north (10 m) and south (8 m) and east (5 m): best aligned wins.
    links = here + np.array([10 * north, -8 * north, 5 * east])
    axis = street_axis(here, 30.0, linked_positions=links)
    assert axis.source == "links"
    np.testing.assert_allclose(axis.forward, north)
    np.testing.assert_allclose(axis.backward, -north)
    assert (axis.forward_gap_m, axis.backward_gap_m) == (10.0, 8.0)
    # One link behind only: forward mirrors it, with no known gap.
    one = street_axis(here, 0.0, linked_positions=here[None] - 6 * north)
    np.testing.assert_allclose(one.forward, north)
    assert (one.forward_gap_m, one.backward_gap_m) == (None, 6.0)
    # Neighbours: the nearest within 45° of the heading; a sloped street keeps its slope.
    nearby = here + np.array([[0.0, 20.0, 0.0], [3.0, 12.0, 1.2], [15.0, 1.0, 0.0]])
    near_axis = street_axis(here, 10.0, nearby_positions=nearby)
    assert near_axis.source == "neighbours"
    slope = np.array([3.0, 12.0, 1.2])
    np.testing.assert_allclose(near_axis.forward, slope / np.linalg.norm(slope))
    np.testing.assert_allclose(near_axis.backward, -near_axis.forward)
    fallback = street_axis(here, 90.0, nearby_positions=here[None] + [[0.0, 30.0, 0.0]])
    assert fallback.source == "heading"
    np.testing.assert_allclose(fallback.forward, east, atol=1e-12)
    assert fallback.direction(-4.0) is fallback.backward and fallback.gap_m(4.0) is None


def _write_scene_set(street_scene, root: Path, origin: GeoOrigin) -> None:
    """Two panoramas 10 m apart along the street with depth PNGs, linked both ways."""
    with PanoramaSetWriter(root, origin=origin) as writer:
        for pano_id, s, link in (("a", 0.0, "b"), ("b", 10.0, "a")):
            position = s * street_scene.along
            image, ranges = street_scene.render_panorama(position, street_scene.bearing_deg, 512)
            lat, lon, alt = enu_to_geodetic(position, origin)
            record = PanoramaRecord(
                id=pano_id,
                lat=float(lat),
                lon=float(lon),
                alt=float(alt),
                heading_deg=street_scene.bearing_deg,
                image="pending",
                links=[link],
            )
            writer.add(record, image, ranges)


def synthesize_set_views(pano_set: PanoramaSet, config: ViewSynthesisConfig) -> list[PanoramaViews]:
    """Views of every panorama of a set at the set's origin, as the map build makes them per panorama."""
    cam = config.camera.pinhole()
    positions = pano_set.positions_enu()
    axes = street_axes(pano_set, positions, config.neighbour_radius_m)
    results = []
    for k, record in enumerate(pano_set.records):
        image, range_map = load_panorama_for_views(pano_set, record, cam, config)
        pose = panorama_body_pose(positions[k], record.heading_deg, record.pitch_deg, record.roll_deg)
        results.append(
            synthesize_panorama_views(
                record.id,
                image,
                range_map,
                pose,
                heading_deg=record.heading_deg,
                config=config,
                camera=cam,
                axis=axes[record.id],
            )
        )
    return results


def test_synthesize_set_views_end_to_end(street_scene, tmp_path: Path) -> None:
    origin = GeoOrigin(48.8738, 2.2950, 35.0)
    _write_scene_set(street_scene, tmp_path / "set", origin)
    pano_set = PanoramaSet.load(tmp_path / "set")
    axes = street_axes(pano_set)
    np.testing.assert_allclose(axes["a"].forward, street_scene.along, atol=1e-6)
    assert axes["a"].forward_gap_m == pytest.approx(10.0, abs=1e-3) and axes["a"].backward_gap_m is None
    np.testing.assert_allclose(axes["b"].backward, -street_scene.along, atol=1e-6)

    config = ViewSynthesisConfig(
        camera=ViewCameraConfig(width=64, height=48), num_yaws=4, virtual_offsets_m=(-4.0, 4.0, 12.0)
    )
    results = synthesize_set_views(pano_set, config)
    assert [r.pano_id for r in results] == ["a", "b"]
    statuses = {r.pano_id: [o.status for o in r.offsets] for r in results}
    # 12 m passes the neighbour 10 m ahead of "a"; "b" has no neighbour ahead.
    assert statuses["a"] == ["rendered", "rendered", "beyond_neighbour"]
    assert statuses["b"] == ["rendered", "rendered", "rendered"]
    view = next(v for v in results[0].virtual if v.offset_m == 4.0)
    position = 4.0 * street_scene.along
    np.testing.assert_allclose(view.T_map_optical.translation, position, atol=0.01)
    assert sum(len(report.hole_ratios) for r in results for report in r.offsets) == 20


# ---------------------------------------------------------------------------- against the simulator
# Done-when bound against the simulator's exact rasteriser (tiny town): PSNR of each kept virtual
# view, holes excluded. Measured 23.1-27.0 dB over the 7 kept views (1024-px panorama, 160x120
# views, default warp grid); lower than on the analytic street because the town's textures have
# detail at the pixel scale (windows, bricks) that resampling the panorama twice (sim, then warp)
# softens. The same views score ~6 dB less (mean) against renders rotated by 1°: the bound is paired
# with that comparison so that it also checks registration.
SIM_PSNR_BOUND_DB = 21.0


def test_virtual_view_matches_the_simulator_render() -> None:
    from geoloc_ros.geo.heading import enu_yaw_to_compass
    from geoloc_ros.sim.render import Conditions, render_panorama, render_pinhole
    from geoloc_ros.sim.scenario import preset
    from geoloc_ros.sim.town import build_town

    town = build_town(preset("tiny"), 0)
    street = town.network.streets[0]
    xy, tangent = street.point_at(street.length / 2.0)
    position = np.array([xy[0], xy[1], 2.5])
    along = np.array([tangent[0], tangent[1], 0.0])
    heading = float(enu_yaw_to_compass(math.atan2(tangent[1], tangent[0])))
    # Plain ambient light: the comparison is about geometry, not shading.
    conditions = Conditions(
        sun_direction=(0.0, -0.5, math.sqrt(0.75)),
        sun_bgr=(0.0, 0.0, 0.0),
        ambient_bgr=(1.0, 1.0, 1.0),
        cloud_cover=0.0,
    )
    pose = panorama_body_pose(position, heading)
    image, ranges = render_panorama(town, pose, 1024, conditions)
    config = ViewSynthesisConfig(camera=ViewCameraConfig(width=160, height=120), num_yaws=4)
    camera = config.camera.pinhole()
    axis = street_axis(
        position, heading, linked_positions=np.array([position + 10 * along, position - 10 * along])
    )
    result = synthesize_panorama_views(
        "sim", image, ranges, pose, heading_deg=heading, config=config, camera=camera, axis=axis
    )
    assert [r.status for r in result.offsets] == ["rendered", "rendered"]
    assert len(result.virtual) >= 6  # a view beside a parked bus is mostly unseen: discarded
    at_pose, rotated = [], []
    for view in result.virtual:
        np.testing.assert_allclose(
            view.T_map_optical.translation, position + view.offset_m * along, atol=1e-9
        )
        truth, z_truth = render_pinhole(town, camera, view.T_map_optical, conditions)
        valid = view.valid > 0
        at_pose.append(psnr(view.image, truth, valid))
        assert at_pose[-1] >= SIM_PSNR_BOUND_DB, view.spec.view_id
        off = view_specs("x", "virtual", 0.0, view.T_map_optical.translation, [view.yaw_deg + 1.0])[0]
        rotated.append(
            psnr(view.image, render_pinhole(town, camera, off.T_map_optical, conditions)[0], valid)
        )
        both = (view.depth > 0) & (z_truth > 0)
        rel = np.abs(view.depth[both] - z_truth[both]) / z_truth[both]
        assert np.median(rel) < 0.01, view.spec.view_id
    assert np.mean(at_pose) > np.mean(rotated) + 3.0


def test_warp_points_come_from_exact_pixels_or_nearest_upsampling() -> None:
    camera = ViewCameraConfig().pinhole()  # 640x480, 57.6°
    width = warp_grid_width(camera, 0.5)
    assert width == 2 * math.ceil(math.pi * camera.fx * 0.5)
    fine = np.random.default_rng(0).uniform(1, 50, (2048, 4096)).astype(np.float32)
    source, stride = warp_points_source(fine, camera, 0.5)
    assert source is fine and stride == 4096 // width
    pose = panorama_body_pose(np.zeros(3), 0.0)
    points = PanoramaPoints.from_range_map(fine, pose, stride)
    assert points.xyz.shape[1] == (2048 // stride) * (4096 // stride)
    # Subsampled points keep their pixels' exact ranges and directions.
    np.testing.assert_allclose(np.linalg.norm(points.xyz, axis=0), points.ranges, rtol=1e-5)
    coarse = np.zeros((256, 512), np.float32)
    coarse[:, 100] = 7.0
    up, up_stride = warp_points_source(coarse, camera, 0.5)
    assert up.shape == (width // 2, width) and up_stride == 1
    assert set(np.unique(up)) == {0.0, 7.0}  # nearest neighbour: no blended ranges


def test_street_view_depth_is_evaluated_on_the_warp_grid(shared_dir: Path, tmp_path: Path) -> None:
    xml = shared_dir / "fixtures" / "gsv" / "M0zT0mYKzPobhRw0G3AXQg.xml"
    if not xml.is_file():
        pytest.skip(f"{xml} is missing")
    with PanoramaSetWriter(tmp_path / "set") as writer:
        shutil.copy(xml, writer.staging_dir / "depth.xml")
        record = PanoramaRecord(
            id="g", lat=-22.9, lon=-68.2, heading_deg=333.9, image="x", depth_gsv="depth.xml"
        )
        writer.add(record, np.zeros((256, 512, 3), np.uint8))
    pano_set = PanoramaSet.load(tmp_path / "set")
    config = ViewSynthesisConfig()  # 640x480 views: a 1832-px warp grid, finer than 512x256
    camera = config.camera.pinhole()
    image, ranges = load_panorama_for_views(pano_set, pano_set["g"], camera, config)
    width = warp_grid_width(camera, config.warp_grid_scale)
    assert image.shape == (256, 512, 3)
    assert ranges is not None and ranges.shape == (width // 2, width)
    np.testing.assert_allclose(ranges[-1], 2.7325, atol=2e-3)  # the nadir row: the camera height
    # Exact planes, not a nearest-upsampled 512x256 map (which repeats each value over ~3.6 rows):
    # the range grows strictly from the nadir up along the ground behind the camera.
    ground = ranges[-width // 8 :, 0]
    assert np.all(np.diff(ground) < 0)
