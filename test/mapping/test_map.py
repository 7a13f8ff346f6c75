import json
import shutil

import cv2
import numpy as np
import pytest

from geoloc_ros.bovw.features import FeatureExtractor, FeatureKind
from geoloc_ros.bovw.kinds import feature_kind
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.gis.equirect import panorama_body_pose
from geoloc_ros.gis.panorama_set import PanoramaSet
from geoloc_ros.gis.views import ViewSpec, render_rectified_view
from geoloc_ros.gis.virtual import load_panorama_for_views
from geoloc_ros.mapping.container import FORMAT_VERSION, MANIFEST_NAME
from geoloc_ros.mapping.errors import BundleChecksumError, BundleFormatError
from geoloc_ros.mapping.map import MapBundle, ViewKind
from geoloc_ros.mapping.tiles import tile_keys


@pytest.fixture(scope="module")
def bundle(tiny_map_dir):
    return MapBundle.open(tiny_map_dir, verify="full")


def test_accessors_have_consistent_shapes(bundle, tiny_sim_dir):
    pano_set = PanoramaSet.load(tiny_sim_dir / "panoramas")
    n = bundle.n_views
    assert bundle.n_panoramas == len(pano_set) == len(bundle.panorama_ids)
    assert bundle.panorama_ids == [r.id for r in pano_set.records]
    assert np.allclose(bundle.panorama_positions, pano_set.positions_enu())
    assert bundle.origin == pano_set.origin
    assert bundle.camera == PinholeCamera.load(tiny_sim_dir / "drive" / "camera.yaml").undistorted()
    views = bundle.views
    for name in (
        "pano_index",
        "local_index",
        "kind",
        "offset_m",
        "yaw_deg",
        "pitch_deg",
        "hole_ratio",
        "tile",
    ):
        assert getattr(views, name).shape == (n,), name
    assert views.T_map_optical.shape == (n, 4, 4) and views.position.shape == (n, 3)
    assert np.array_equal(views.position, views.T_map_optical[:, :3, 3])
    kinds = np.asarray(views.kind)
    assert set(np.unique(kinds)) == {ViewKind.RECTIFIED, ViewKind.VIRTUAL}
    assert np.all(np.asarray(views.offset_m)[kinds == ViewKind.RECTIFIED] == 0)
    assert np.all(np.abs(np.asarray(views.offset_m)[kinds == ViewKind.VIRTUAL]) == 4.0)
    assert np.all(np.asarray(views.hole_ratio) <= bundle.build_config.views.max_hole_ratio)
    # Every panorama has its 12 rectified views.
    rectified = np.bincount(
        np.asarray(views.pano_index)[kinds == ViewKind.RECTIFIED], minlength=bundle.n_panoramas
    )
    assert np.all(rectified == 12)
    counts = bundle.manifest["counts"]
    assert counts["views"] == n and counts["features"] == bundle.n_features == bundle.feature_offsets[-1]
    assert bundle.index.n_views == n and bundle.topology.n_views == n
    assert bundle.cosimilarity.shape == (n, n) and bundle.support_graph().shape == (n, n)
    assert bundle.vocabularies.bag_sizes == {"sift": 2000, "mser": 600}
    fast = bundle.query_feature_config()
    assert fast.sift_scale == 0.5 and fast.mser_scale == bundle.feature_config.mser_scale


def test_features_slices_and_batches_agree(bundle):
    rng = np.random.default_rng(0)
    chosen = rng.choice(bundle.n_views, size=6, replace=False)
    batch = bundle.features_batch(chosen)
    assert np.array_equal(batch.view_ids, chosen)
    for k, view in enumerate(chosen):
        features, points = bundle.features(int(view))
        # Read into arrays the caller owns (no memory map of the feature store stays resident).
        assert not isinstance(points, np.memmap) and points.flags.writeable
        assert len(features) == len(points) == int(np.diff(bundle.feature_offsets)[view]) > 0
        assert features.image_size == bundle.camera.size
        in_batch, batch_points = batch.of_view(k)
        assert np.shares_memory(in_batch.descriptors, batch.features.descriptors)  # a view of the batch
        assert np.array_equal(in_batch.descriptors, features.descriptors)
        assert np.array_equal(batch_points, points, equal_nan=True)
        words = bundle.words(int(view))
        for name in ("sift", "mser"):
            kind = feature_kind(name).code
            of_kind = words[features.kind == kind]
            assert np.all((of_kind >= 0) & (of_kind < bundle.vocabularies.bag_sizes[name]))
            assert np.array_equal(bundle.words_by_bag(int(view))[name], of_kind)
            # The stored words are the vocabulary's words of the stored descriptors.
            expected = bundle.vocabularies.by_bag[name].quantize(
                np.ascontiguousarray(features.descriptors[features.kind == kind])
            )
            assert np.array_equal(of_kind, expected)
    assert np.array_equal(batch.view_of_feature, np.repeat(np.arange(6), np.diff(batch.offsets)))


def rendered_rectified_view(bundle, tiny_sim_dir, view):
    """The view re-rendered from its panorama (independently of the build)."""
    pano_set = PanoramaSet.load(tiny_sim_dir / "panoramas")
    p = int(bundle.views.pano_index[view])
    record = pano_set.records[p]
    image, ranges = load_panorama_for_views(pano_set, record, bundle.camera, bundle.build_config.views)
    body = panorama_body_pose(
        bundle.panorama_positions[p], record.heading_deg, record.pitch_deg, record.roll_deg
    )
    spec = ViewSpec(
        record.id,
        "rectified",
        0.0,
        float(bundle.views.yaw_deg[view]),
        float(bundle.views.pitch_deg[view]),
        bundle.views.pose(view),
    )
    return render_rectified_view(spec, bundle.camera, image, ranges, body)


def test_keypoint_points_reproject_at_their_pixel_and_view_depth(bundle, tiny_sim_dir):
    rectified = np.flatnonzero(np.asarray(bundle.views.kind) == ViewKind.RECTIFIED)
    for view in rectified[::17][:4]:
        features, points = bundle.features(int(view))
        known = np.all(np.isfinite(points), axis=1)
        assert known.mean() > 0.5
        optical = bundle.views.pose(int(view)).inverse().transform_points(points[known].astype(np.float64))
        uv, in_front = bundle.camera.project(optical)
        assert np.all(in_front)
        assert np.abs(uv - features.keypoints_xy[known]).max() < 0.05
        depth = rendered_rectified_view(bundle, tiny_sim_dir, int(view)).depth
        col = np.rint(features.keypoints_xy[known, 0]).astype(int)
        row = np.rint(features.keypoints_xy[known, 1]).astype(int)
        relative = np.abs(optical[:, 2] - depth[row, col]) / depth[row, col]
        assert np.median(relative) < 0.01 and relative.max() < 0.15


def test_view_images_round_trip(bundle, tiny_sim_dir):
    assert bundle.has_images
    view = int(np.flatnonzero(np.asarray(bundle.views.kind) == ViewKind.RECTIFIED)[5])
    image = bundle.view_image(view)
    assert image.dtype == np.uint8 and image.shape == (bundle.camera.height, bundle.camera.width, 3)
    reference = rendered_rectified_view(bundle, tiny_sim_dir, view).image
    assert cv2.PSNR(image, reference) > 30.0  # JPEG quality 90 of the same pixels
    source = bundle.view_source()
    assert len(source) == bundle.n_views and source.camera == bundle.camera
    assert np.array_equal(source.image(view), image)
    assert np.array_equal(source.pose(view).as_matrix(), bundle.views.T_map_optical[view])
    assert source.group(view) == bundle.panorama_ids[int(bundle.views.pano_index[view])]


def test_views_near_returns_exactly_the_views_within_the_radius(bundle):
    positions = np.asarray(bundle.views.position)[:, :2]
    rng = np.random.default_rng(1)
    lo, hi = positions.min(axis=0) - 30, positions.max(axis=0) + 30
    for centre, radius in zip(rng.uniform(lo, hi, size=(25, 2)), rng.uniform(0, 120, size=25), strict=True):
        expected = np.flatnonzero(np.linalg.norm(positions - centre, axis=1) <= radius)
        assert np.array_equal(bundle.views_near(centre, radius), expected)
    assert bundle.views_near(centre, 1e6).tolist() == list(range(bundle.n_views))
    assert bundle.views_near(hi + 5000, 10.0).size == 0


def test_tiles_are_contiguous_row_ranges(bundle):
    tiles = np.asarray(bundle.views.tile)
    assert np.all(np.diff(tiles) >= 0)
    keys = tile_keys(np.asarray(bundle.views.position), bundle.build_config.tiles.tile_size_m)
    assert np.array_equal(keys, bundle.tiles.keys[tiles])
    for t, key in enumerate(bundle.tiles.keys):
        in_tile = bundle.views_in_tile(tuple(key))
        assert np.array_equal(in_tile, np.flatnonzero(tiles == t))
        assert bundle.tile_of(bundle.views.position[in_tile[0]]) == tuple(int(k) for k in key)
    # Within a tile: panorama order, then each panorama's own view order.
    for t in range(bundle.tiles.n_tiles):
        rows = slice(bundle.tiles.starts[t], bundle.tiles.starts[t + 1])
        order = np.lexsort((bundle.views.local_index[rows], bundle.views.pano_index[rows]))
        assert np.array_equal(order, np.arange(len(order)))


def test_a_view_image_retrieves_its_own_panorama(bundle):
    retriever = bundle.retriever()
    extractor = FeatureExtractor(bundle.feature_config)
    rectified = np.flatnonzero(np.asarray(bundle.views.kind) == ViewKind.RECTIFIED)
    for view in rectified[::23]:
        features = extractor.extract(bundle.view_image(int(view)))
        assert np.any(features.kind == FeatureKind.MSER)
        best = int(retriever.retrieve(features).view_ids[0])
        assert bundle.views.pano_index[best] == bundle.views.pano_index[view]


def test_manifest_reports_the_null_pixel_table(bundle):
    table = bundle.hole_ratio_table()
    assert [row["offset_m"] for row in table] == [-4.0, 4.0]
    virtual = bundle.manifest["virtual_views"]
    assert virtual["kept"] == int(np.count_nonzero(np.asarray(bundle.views.kind) == ViewKind.VIRTUAL))
    assert virtual["rendered"] == sum(row["views"] for row in table) == virtual["kept"] + virtual["discarded"]
    info = bundle.info()
    assert info["counts"]["views"] == bundle.n_views and info["bytes"] > 0


@pytest.fixture
def bundle_copy(tiny_map_dir, tmp_path):
    copy = tmp_path / "map"
    shutil.copytree(tiny_map_dir, copy)
    return copy


def test_corrupted_member_is_named(bundle_copy):
    target = bundle_copy / "features" / "descriptors.npy"
    data = bytearray(target.read_bytes())
    data[-7] ^= 0x5A
    target.write_bytes(bytes(data))
    with pytest.raises(BundleChecksumError, match=r"features/descriptors\.npy: checksum mismatch"):
        MapBundle.open(bundle_copy)
    (bundle_copy / "views" / "tile.npy").unlink()
    with pytest.raises(BundleChecksumError, match=r"views/tile\.npy: listed in the manifest but missing"):
        MapBundle.open(bundle_copy, verify="sizes")


def test_other_format_version_or_content_is_refused(bundle_copy):
    manifest_path = bundle_copy / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    manifest_path.write_text(json.dumps({**manifest, "format_version": FORMAT_VERSION + 1}))
    with pytest.raises(
        BundleFormatError, match=rf"manifest\.json: bundle format version {FORMAT_VERSION + 1}"
    ):
        MapBundle.open(bundle_copy)
    manifest_path.write_text(json.dumps({**manifest, "content": "something else"}))
    with pytest.raises(BundleFormatError, match=r"manifest\.json: not a map bundle"):
        MapBundle.open(bundle_copy, verify="none")
    broken = {**manifest, "build_config": {**manifest["build_config"], "tiles": {"tile_size_m": -1}}}
    manifest_path.write_text(json.dumps(broken))
    with pytest.raises(BundleFormatError, match=r"build_config: tiles\.tile_size_m"):
        MapBundle.open(bundle_copy, verify="none")


def test_bundle_id_follows_the_content_not_the_copy(bundle, tiny_map_dir, tmp_path):
    import json
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_map_dir, copy)
    assert MapBundle.open(copy, verify="none").bundle_id == bundle.bundle_id
    records_path = copy / "panoramas" / "records.json"
    records = json.loads(records_path.read_text())
    records[0]["id"] = "another_panorama"
    records_path.write_text(json.dumps(records))
    other = MapBundle.open(copy, verify="none").bundle_id
    assert other != bundle.bundle_id and len(other) == 16
