from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from geoloc_ros.geometry.frames import body_pose_from_optical
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.posenet.dataset import FolderViewSource
from geoloc_ros.posenet.errors import DatasetError
from geoloc_ros.posenet.synthesis import (
    SYNTHESIS_FILE,
    SynthesisConfig,
    open_synthetic_views,
    panorama_inputs_from_bundle,
    sample_views,
    street_edges,
    synthesis_camera,
    synthesize_views,
    view_requests_at_poses,
)

SMALL = {"enabled": True, "views_per_metre": 0.25, "views_per_panorama": 2, "image_scale": 0.5}


@pytest.fixture(scope="module")
def bundle(tiny_map_dir: Path) -> MapBundle:
    return MapBundle.open(tiny_map_dir, verify="sizes")


@pytest.fixture(scope="module")
def synthetic(bundle: MapBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "views"
    synthesize_views(bundle, out, SynthesisConfig.model_validate(SMALL), workers=1)
    return out


def test_views_are_sampled_where_a_car_drives(bundle: MapBundle) -> None:
    config = SynthesisConfig.model_validate({**SMALL, "views_per_metre": 2.0, "views_per_panorama": 10})
    panoramas = panorama_inputs_from_bundle(bundle)
    edges = street_edges(panoramas, config.max_link_m)
    assert edges and all(i < j for i, j in edges)
    requests = sample_views(panoramas, config)
    assert [r.index for r in requests] == list(range(len(requests)))
    # Deterministic in the seed, different with another seed.
    again = sample_views(panoramas, config)
    assert all(
        np.array_equal(a.position, b.position) and a.yaw == b.yaw
        for a, b in zip(requests, again, strict=True)
    )
    other = sample_views(panoramas, config.model_copy(update={"seed": 1}))
    assert not np.allclose(requests[0].position, other[0].position)
    positions = np.array([p.position for p in panoramas])
    ground = positions[:, 2] - np.array([p.record.camera_height_m or 2.5 for p in panoramas])
    for r in requests:
        # Camera height above the ground of its panorama(s) within the configured jitter.
        nearest_ground = ground[[r.primary] + ([r.secondary] if r.secondary is not None else [])]
        assert nearest_ground.min() + 1.5 - 0.16 <= r.position[2] <= nearest_ground.max() + 1.5 + 0.16
        assert abs(r.pitch_deg - 2.0) <= 1.0 + 1e-9
    street = [r for r in requests if r.kind == "street"]
    for r in street:
        a, b = positions[r.primary, :2], positions[r.secondary, :2]
        d = (b - a) / np.linalg.norm(b - a)
        lateral = abs(d[0] * (r.position[1] - a[1]) - d[1] * (r.position[0] - a[0]))
        assert lateral <= 3.0 + 1e-9
        # The nearer end of the segment renders the view.
        assert np.linalg.norm(r.position[:2] - a) <= np.linalg.norm(r.position[:2] - b) + 1e-9

    def street_angle(r: object) -> float:
        a, b = positions[r.primary, :2], positions[r.secondary, :2]  # type: ignore[attr-defined]
        axis = math.atan2(b[1] - a[1], b[0] - a[0])
        return abs(math.remainder(r.yaw - axis, math.pi))  # type: ignore[attr-defined]

    along = np.array([street_angle(r) <= math.radians(20.0) + 1e-9 for r in street])
    assert 0.6 <= along.mean() <= 0.9  # 70% drawn along the street, plus ring draws that land there
    discs = [r for r in requests if r.kind == "disc"]
    assert len(discs) == 10 * len(panoramas)
    assert all(np.linalg.norm(r.position[:2] - positions[r.primary, :2]) <= 6.0 + 1e-9 for r in discs)


def test_synthesized_folder_is_a_view_source_with_exact_poses(bundle: MapBundle, synthetic: Path) -> None:
    config = SynthesisConfig.model_validate(SMALL)
    source = open_synthetic_views(synthetic, config, bundle.origin)
    assert isinstance(source, FolderViewSource) and len(source) > 0
    camera = synthesis_camera(bundle.camera, config)
    assert source.camera.width == camera.width == round(bundle.camera.width / 2)
    meta = json.loads((synthetic / SYNTHESIS_FILE).read_text())
    counts = meta["counts"]
    assert counts["written"] == len(source)
    assert counts["written"] + counts["blocked"] + counts["too_many_holes"] == counts["requested"]
    assert meta["mean_hole_ratio"]["composited"] <= meta["mean_hole_ratio"]["first_panorama"]
    ids = set(bundle.panorama_ids)
    for i in range(len(source)):
        image = source.image(i)
        assert image.shape == (camera.height, camera.width, 3)
        assert image.mean() > 5  # inpainted, not black
        body = body_pose_from_optical(source.pose(i))
        assert abs(np.rad2deg(body.ypr[1]) - 2.0) <= 1.0 + 1e-6
        assert source.group(i) in ids


def test_views_rendered_at_given_poses_reproduce_the_sampled_views(
    bundle: MapBundle, synthetic: Path, tmp_path: Path
) -> None:
    # The sampled views' own poses, given back: the same renderer must give the same poses and images.
    config = SynthesisConfig.model_validate(SMALL)
    sampled = FolderViewSource(synthetic)
    poses = [sampled.pose(i) for i in range(len(sampled))]
    panoramas = panorama_inputs_from_bundle(bundle)
    requests = view_requests_at_poses(panoramas, poses)
    xy = np.array([p.position[:2] for p in panoramas])
    for request, pose in zip(requests, poses, strict=True):
        assert request.kind == "pose"
        np.testing.assert_allclose(request.t_map_optical().as_matrix(), pose.as_matrix(), atol=1e-9)
        distances = np.linalg.norm(xy - pose.translation[:2], axis=1)
        assert distances[request.primary] == pytest.approx(distances.min())
        assert request.secondary is not None and request.secondary != request.primary
    out = tmp_path / "at_poses"
    summary = synthesize_views(bundle, out, config, workers=1, poses=poses)
    meta = json.loads((out / SYNTHESIS_FILE).read_text())
    assert meta["counts"]["requested"] == len(poses) and meta["counts"]["by_kind"] == {
        "pose": summary.written
    }
    again = FolderViewSource(out)
    assert len(again) >= 0.9 * len(poses)
    names = [json.loads(line)["image"] for line in (out / "views.jsonl").read_text().splitlines()]
    differences = []
    for i, name in enumerate(names):
        k = int(Path(name).stem)  # the k-th given pose
        np.testing.assert_allclose(again.pose(i).as_matrix(), poses[k].as_matrix(), atol=1e-6)
        differences.append(np.abs(again.image(i).astype(float) - sampled.image(k).astype(float)).mean())
    # Most views come from the same panorama pair as when sampled: nearly the same pixels.
    assert float(np.median(differences)) < 3.0


def test_folder_is_checked_against_the_settings_and_the_map_frame(
    bundle: MapBundle, synthetic: Path, tmp_path: Path
) -> None:
    config = SynthesisConfig.model_validate(SMALL)
    # workers and enabled do not change the views.
    open_synthetic_views(synthetic, config.model_copy(update={"workers": 3, "enabled": False}), bundle.origin)
    with pytest.raises(DatasetError, match=r"other synthesis settings \(differing: \['lateral_range_m'\]"):
        open_synthetic_views(
            synthetic, config.model_copy(update={"lateral_range_m": (-1.0, 1.0)}), bundle.origin
        )
    from geoloc_ros.geo.enu import GeoOrigin

    with pytest.raises(DatasetError, match="another map frame"):
        open_synthetic_views(synthetic, config, GeoOrigin(10.0, 10.0, 0.0))
    with pytest.raises(DatasetError, match="not a synthesized view folder"):
        open_synthetic_views(tmp_path, config, bundle.origin)


def test_panorama_set_must_be_found(bundle: MapBundle, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a panorama set"):
        panorama_inputs_from_bundle(bundle, [tmp_path])
    with pytest.raises(ValueError, match="lateral_range_m"):
        SynthesisConfig.model_validate({"lateral_range_m": (2.0, -2.0)})


def _without_depth(bundle: MapBundle, ids: set[str]) -> SimpleNamespace:
    """The bundle as synthesis sees it, with the depth of the panoramas ``ids`` removed (real GIS
    imagery: some panoramas come without depth)."""
    records = [
        r.model_copy(update={"depth": None, "depth_gsv": None}) if r.id in ids else r
        for r in bundle.panorama_records
    ]
    return SimpleNamespace(
        path=bundle.path,
        manifest=bundle.manifest,
        panorama_records=records,
        panorama_positions=bundle.panorama_positions,
        camera=bundle.camera,
        origin=bundle.origin,
    )


def test_panoramas_without_depth_shape_the_streets_but_are_not_rendered_from(
    bundle: MapBundle, tmp_path: Path
) -> None:
    config = SynthesisConfig.model_validate({**SMALL, "views_per_metre": 1.0, "views_per_panorama": 4})
    complete = panorama_inputs_from_bundle(bundle)
    dropped = {complete[1].record.id, complete[4].record.id}
    partial = _without_depth(bundle, dropped)
    panoramas = panorama_inputs_from_bundle(partial)
    assert [p.record.has_depth for p in panoramas] == [p.record.id not in dropped for p in panoramas]
    # The same streets and the same random draws: only the panoramas rendered from change.
    assert street_edges(panoramas, config.max_link_m) == street_edges(complete, config.max_link_m)
    before, after = sample_views(complete, config), sample_views(panoramas, config)
    assert len(after) == len(before)
    assert all(np.array_equal(a.position, b.position) for a, b in zip(before, after, strict=True))
    used = {r.primary for r in after} | {r.secondary for r in after if r.secondary is not None}
    assert not used & {1, 4}
    # A view near a dropped panorama is rendered from its street's other end when that has depth,
    # else from the nearest panorama with depth.
    xy = np.array([p.position[:2] for p in panoramas])
    for r in after:
        old = before[r.index]
        if old.primary in (1, 4):
            distances = np.linalg.norm(xy - r.position[:2], axis=1)
            distances[[1, 4]] = np.inf
            other_end = old.secondary if r.kind == "street" and old.secondary not in (1, 4) else None
            assert r.primary in (other_end, int(np.argmin(distances)))
        else:
            assert r.primary == old.primary
        assert r.secondary != r.primary
    poses = [r.t_map_optical() for r in after[:5]]
    assert not {r.primary for r in view_requests_at_poses(panoramas, poses)} & {1, 4}
    # Rendering works and records which panoramas had no depth.
    out = tmp_path / "views"
    summary = synthesize_views(partial, out, config, workers=1)
    assert summary.written > 0
    meta = json.loads((out / SYNTHESIS_FILE).read_text())
    assert sorted(meta["panoramas_without_depth"]) == sorted(dropped)
    # Without any depth there is nothing to render from.
    with pytest.raises(DatasetError, match="no panorama has depth"):
        panorama_inputs_from_bundle(_without_depth(bundle, {p.record.id for p in complete}))
