import json
import shutil

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from geoloc_ros.cli.main import cli
from geoloc_ros.errors import ConfigError
from geoloc_ros.mapping.build import add_panoramas
from geoloc_ros.mapping.compact import CompactConfig, compact_bundle
from geoloc_ros.mapping.container import FORMAT_VERSION, MANIFEST_NAME
from geoloc_ros.mapping.errors import BundleError, BundleFormatError, MapBuildError
from geoloc_ros.mapping.map import MapBundle


@pytest.fixture(scope="module")
def compacted(tiny_map_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("compact") / "map"
    config = CompactConfig(pq_bytes=32, train_descriptors=5000, thumbnail_width=160)
    summary = compact_bundle(tiny_map_dir, out, config)
    return summary, MapBundle.open(out, verify="full"), MapBundle.open(tiny_map_dir, verify="none")


def test_compact_bundle_is_smaller_and_keeps_everything_but_the_bytes(compacted):
    summary, small, raw = compacted
    assert small.manifest["format_version"] == FORMAT_VERSION == 2
    assert summary.bytes_after < 0.7 * summary.bytes_before
    assert small.bundle.total_bytes == summary.bytes_after
    assert small.feature_storage.descriptors == "pq" and small.feature_storage.pq_bytes == 32
    assert small.info()["feature_storage"]["float16"] == ["size", "angle", "response"]
    assert not small.bundle.has("features/descriptors") and small.bundle.has("features/descriptor_codes")
    assert small.n_views == raw.n_views and small.n_features == raw.n_features
    # What retrieval reads is copied byte for byte.
    for rel, entry in raw.manifest["files"].items():
        if rel.startswith(
            ("index/", "vocabulary/", "views/", "tiles/", "cosimilarity/", "topology/")
        ) or rel in (
            "features/words.npy",
            "features/points_map.npy",
            "features/keypoints_xy.npy",
            "features/kind.npy",
        ):
            assert small.manifest["files"][rel]["sha256"] == entry["sha256"], rel


def test_compact_features_decode_close_to_the_raw_ones(compacted):
    _, small, raw = compacted
    for view in (0, raw.n_views // 2, raw.n_views - 1):
        a, pa = raw.features(view)
        b, pb = small.features(view)
        assert np.array_equal(a.keypoints_xy, b.keypoints_xy) and np.array_equal(a.kind, b.kind)
        assert np.array_equal(pa, pb, equal_nan=True)
        assert b.size.dtype == np.float32 and np.allclose(a.size, b.size, rtol=1e-3)
        assert np.allclose(a.angle, b.angle, atol=0.25)
        assert b.descriptors.dtype == np.uint8 and b.descriptors.shape == a.descriptors.shape
        da, db = a.descriptors.astype(np.float32), b.descriptors.astype(np.float32)
        relative = np.linalg.norm(da - db, axis=1) / np.maximum(np.linalg.norm(da, axis=1), 1)
        assert np.median(relative) < 0.2
        # Each decoded descriptor is nearer to its own raw descriptor than to most others.
        nearest = np.argmin(((db[:, None, :] - da[None, :200, :]) ** 2).sum(-1)[:200], axis=1)
        assert np.mean(nearest == np.arange(min(200, len(da)))) > 0.8
    batch = small.features_batch([1, 0])
    first, _ = small.features(1)
    assert np.array_equal(batch.of_view(0)[0].descriptors, first.descriptors)


def test_compact_retrieval_is_unchanged(compacted):
    _, small, raw = compacted
    query, _ = raw.features(3)
    ra = raw.retriever().retrieve(query)
    rb = small.retriever().retrieve(query)
    assert np.array_equal(ra.view_ids, rb.view_ids) and np.array_equal(ra.scores, rb.scores)


def test_thumbnails_come_with_a_scaled_camera(compacted):
    _, small, raw = compacted
    camera = small.image_camera
    assert camera.width == 160 and camera.height == round(raw.camera.height * 160 / raw.camera.width)
    assert np.isclose(camera.fx, raw.camera.fx * 160 / raw.camera.width)
    image = small.view_image(2)
    assert image.shape == (camera.height, camera.width, 3)
    source = small.view_source()
    assert source.camera == camera and len(source) == small.n_views
    # The thumbnail is the full image, shrunk.
    full = raw.view_image(2).astype(np.float32)
    shrunk = cv2.resize(full, camera.size, interpolation=cv2.INTER_AREA)
    assert np.mean(np.abs(shrunk - image)) < 8.0


def test_compacting_twice_in_place_or_extending_is_refused(compacted, tmp_path, tiny_map_dir, tiny_sim_dir):
    summary, _, _ = compacted
    with pytest.raises(MapBuildError, match="cannot be extended"):
        add_panoramas(summary.path, tiny_sim_dir / "panoramas", tmp_path / "added")
    with pytest.raises(BundleError, match="already product-quantised"):
        compact_bundle(summary.path, tmp_path / "again", CompactConfig(train_descriptors=300))
    with pytest.raises(BundleError, match="new directory"):
        compact_bundle(tiny_map_dir, tiny_map_dir)


def test_drop_images_and_raw_descriptors(tiny_map_dir, tmp_path):
    out = tmp_path / "noimages"
    compact_bundle(tiny_map_dir, out, CompactConfig(descriptors="raw", images="drop"), verify="none")
    bundle = MapBundle.open(out)
    assert not bundle.has_images and bundle.feature_storage.descriptors == "raw"
    raw = MapBundle.open(tiny_map_dir, verify="none")
    assert np.array_equal(bundle.features(5)[0].descriptors, raw.features(5)[0].descriptors)


def test_version_1_bundles_still_open_and_bad_storage_is_named(tiny_map_dir, tmp_path):
    old = tmp_path / "v1"
    shutil.copytree(tiny_map_dir, old)
    manifest = json.loads((old / MANIFEST_NAME).read_text())
    manifest["format_version"] = 1
    (old / MANIFEST_NAME).write_text(json.dumps(manifest))
    assert MapBundle.open(old, verify="sizes").feature_storage.descriptors == "raw"
    manifest["feature_storage"] = {"descriptors": "zstd"}
    (old / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleFormatError, match=r"feature_storage\.descriptors"):
        MapBundle.open(old, verify="sizes")
    manifest["format_version"] = 3
    (old / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(BundleFormatError, match=r"format version 3 is not supported.*reads versions 1, 2"):
        MapBundle.open(old, verify="sizes")


def test_cli_compact(tiny_map_dir, tmp_path):
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        cli,
        [
            "map",
            "compact",
            str(tiny_map_dir),
            "--out",
            str(out),
            "--pq-bytes",
            "16",
            "--images",
            "drop",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["bytes_per_view_after"] < summary["bytes_per_view_before"]
    assert MapBundle.open(out).feature_storage.pq_bytes == 16
    info = CliRunner().invoke(cli, ["map", "info", str(out), "--verify", "sizes"])
    assert info.exit_code == 0 and "descriptors product-quantised, 16 bytes each" in info.output
    bad = CliRunner().invoke(
        cli, ["map", "compact", str(tiny_map_dir), "--out", str(tmp_path / "x"), "--pq-bytes", "3"]
    )
    assert isinstance(bad.exception, ConfigError) and "pq_bytes must divide 128" in str(bad.exception)
