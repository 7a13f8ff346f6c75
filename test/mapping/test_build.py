import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from dask_cluster import loopback_cluster

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.gis.panorama_set import INDEX_NAME, ORIGIN_NAME
from geoloc_ros.io.atomic import OutputExistsError
from geoloc_ros.mapping import build as build_module
from geoloc_ros.mapping.build import add_panoramas, build_map
from geoloc_ros.mapping.config import MapBuildConfig
from geoloc_ros.mapping.errors import BundleFormatError, MapBuildError
from geoloc_ros.mapping.map import FEATURE_COLUMNS, MapBundle

# A light map: 4 yaws and one virtual offset per panorama, few features, small vocabularies.
SMALL = MapBuildConfig.model_validate(
    {
        "views": {"num_yaws": 4, "virtual_offsets_m": [4.0]},
        "features": {"sift_max_features": 300, "mser_max_features": 100},
        "vocabulary": {
            "sift": {"n_words": 64, "n_iter": 5, "quantizer": "ivf"},
            "mser": {"n_words": 32, "n_iter": 5, "quantizer": "ivf"},
        },
        "cosimilarity": {"top_k": 5},
    }
)


@pytest.fixture(scope="module")
def camera(tiny_sim_dir):
    return PinholeCamera.load(tiny_sim_dir / "drive" / "camera.yaml")


@pytest.fixture(scope="module")
def small_map(tiny_sim_dir, camera, tmp_path_factory):
    out = tmp_path_factory.mktemp("small") / "map"
    build_map(tiny_sim_dir / "panoramas", out, SMALL, camera=camera, workers=1)
    return out


def view_keys(bundle: MapBundle) -> list[tuple[str, int, float, float]]:
    v = bundle.views
    return [
        (bundle.panorama_ids[int(p)], int(k), round(float(o), 3), round(float(y), 3))
        for p, k, o, y in zip(v.pano_index, v.kind, v.offset_m, v.yaw_deg, strict=True)
    ]


def assert_same_map(a: MapBundle, b: MapBundle) -> None:
    """Equal content up to the order of views (and of panoramas)."""
    keys_a, keys_b = view_keys(a), view_keys(b)
    assert sorted(keys_a) == sorted(keys_b) and len(set(keys_a)) == len(keys_a)
    where_in_b = {key: i for i, key in enumerate(keys_b)}
    to_b = np.array([where_in_b[key] for key in keys_a])
    assert np.allclose(a.views.T_map_optical, b.views.T_map_optical[to_b], atol=1e-9)
    assert np.array_equal(a.views.hole_ratio, b.views.hole_ratio[to_b])
    assert np.array_equal(np.asarray(a.views.local_index), np.asarray(b.views.local_index)[to_b])
    for i, j in enumerate(to_b):
        rows_a, rows_b = a.feature_rows(i), b.feature_rows(int(j))
        for name in FEATURE_COLUMNS:
            column_a, column_b = a.bundle.array(f"features/{name}"), b.bundle.array(f"features/{name}")
            assert np.array_equal(column_a[rows_a], column_b[rows_b], equal_nan=True), (name, keys_a[i])
        assert a.view_jpeg(i) == b.view_jpeg(int(j))
    assert a.vocabularies.bag_sizes == b.vocabularies.bag_sizes
    for bag, vocabulary in a.vocabularies.by_bag.items():
        assert np.array_equal(vocabulary.centroids, b.vocabularies.by_bag[bag].centroids)
    assert (a.index.counts != b.index.counts[to_b]).nnz == 0
    assert np.allclose(a.index.idf, b.index.idf)
    assert np.allclose(a.cosimilarity.toarray(), b.cosimilarity.toarray()[np.ix_(to_b, to_b)])
    dense_a = np.full((a.n_views, a.n_views), -1.0)
    dense_b = np.full((b.n_views, b.n_views), -1.0)
    for topology, dense in ((a.topology, dense_a), (b.topology, dense_b)):
        rows = np.repeat(np.arange(topology.n_views), np.diff(topology.indptr))
        dense[rows, topology.indices] = topology.distance_m
    assert np.allclose(dense_a, dense_b[np.ix_(to_b, to_b)])
    assert a.hole_ratio_table() == b.hole_ratio_table()


def test_dask_local_cluster_build_equals_in_process_build(tiny_sim_dir, camera, small_map, tmp_path):
    summary = build_map(tiny_sim_dir / "panoramas", tmp_path / "dask", SMALL, camera=camera, workers=2)
    assert summary.workers == 2 and "Dask" in summary.runner
    in_process, on_dask = MapBundle.open(small_map), MapBundle.open(tmp_path / "dask")
    assert_same_map(in_process, on_dask)
    # Same order too: the tile sort does not depend on which panorama finished first.
    assert np.array_equal(in_process.views.pano_index, on_dask.views.pano_index)
    assert [p.name for p in tmp_path.iterdir()] == ["dask"]  # no staging left behind


def test_build_through_a_separately_started_dask_cluster_equals_the_local_build(
    tiny_sim_dir, camera, small_map, tmp_path
):
    # `dask scheduler` and two `dask worker` commands, each its own process, on 127.0.0.1.
    with loopback_cluster(2, tmp_path / "cluster") as address:
        assert address.startswith("tcp://127.0.0.1:")
        summary = build_map(
            tiny_sim_dir / "panoramas", tmp_path / "remote", SMALL, camera=camera, scheduler=address
        )
        worker_logs = [(tmp_path / "cluster" / f"worker-{i}.log").read_text() for i in range(2)]
    assert summary.workers == 2 and summary.runner == f"Dask cluster at {address}"
    assert all("Registered to" in log for log in worker_logs)
    local, remote = MapBundle.open(small_map), MapBundle.open(tmp_path / "remote")
    assert_same_map(local, remote)
    assert np.array_equal(local.views.pano_index, remote.views.pano_index)
    assert local.manifest["build"]["runner"] == "in process"


def subset_set(source: Path, target: Path, count: int) -> Path:
    """A panorama set with the first ``count`` panoramas of ``source`` (images shared by symlink)."""
    target.mkdir()
    lines = (source / INDEX_NAME).read_text().splitlines()[:count]
    (target / INDEX_NAME).write_text("\n".join(lines) + "\n")
    shutil.copy(source / ORIGIN_NAME, target / ORIGIN_NAME)
    (target / "images").symlink_to(source / "images")
    return target


def test_incremental_add_equals_a_full_build_with_the_same_vocabulary(tiny_sim_dir, camera, tmp_path):
    panoramas = tiny_sim_dir / "panoramas"
    first = subset_set(panoramas, tmp_path / "first5", 5)
    build_map(first, tmp_path / "base", SMALL, camera=camera, workers=1)
    base = MapBundle.open(tmp_path / "base")
    summary = add_panoramas(tmp_path / "base", panoramas, tmp_path / "added", workers=1)
    assert summary.added_panoramas == 3 and summary.n_panoramas == 8
    # Panoramas next to the new ones get other virtual views (their street axis changed): re-done.
    assert 0 < summary.rerendered_panoramas < 5
    assert summary.processed_panoramas == 3 + summary.rerendered_panoramas
    added = MapBundle.open(tmp_path / "added")
    for bag, vocabulary in base.vocabularies.by_bag.items():
        assert np.array_equal(added.vocabularies.by_bag[bag].centroids, vocabulary.centroids)
    build_map(
        panoramas, tmp_path / "full", SMALL, camera=camera, workers=1, vocabulary_from=tmp_path / "base"
    )
    assert_same_map(added, MapBundle.open(tmp_path / "full"))
    assert added.manifest["sources"]["panorama_sets"] == [str(first.resolve()), str(panoramas.resolve())]


def test_add_in_place_replaces_the_bundle_atomically(tiny_sim_dir, camera, tmp_path):
    first = subset_set(tiny_sim_dir / "panoramas", tmp_path / "first6", 6)
    build_map(first, tmp_path / "map", SMALL, camera=camera, workers=1)
    before = MapBundle.open(tmp_path / "map")
    centroids = {bag: np.array(v.centroids) for bag, v in before.vocabularies.by_bag.items()}
    add_panoramas(tmp_path / "map", tiny_sim_dir / "panoramas", workers=1)
    after = MapBundle.open(tmp_path / "map")
    assert after.n_panoramas == 8 and after.n_views > before.n_views
    assert all(np.array_equal(after.vocabularies.by_bag[bag].centroids, c) for bag, c in centroids.items())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first6", "map"]
    with pytest.raises(MapBuildError, match="every panorama of the set is already in"):
        add_panoramas(tmp_path / "map", tiny_sim_dir / "panoramas", workers=1)


def test_add_refuses_a_moved_panorama(tiny_sim_dir, camera, small_map, tmp_path):
    moved = tmp_path / "moved"
    shutil.copytree(tiny_sim_dir / "panoramas", moved, symlinks=True)
    records = [json.loads(line) for line in (moved / INDEX_NAME).read_text().splitlines()]
    records[0]["heading_deg"] += 10.0
    records.append({**records[1], "id": "extra", "lat": records[1]["lat"] + 1e-4})
    (moved / INDEX_NAME).write_text("".join(json.dumps(r) + "\n" for r in records))
    first = MapBundle.open(small_map).panorama_ids[0]
    with pytest.raises(MapBuildError, match=rf"panorama '{first}' differs from the one in"):
        add_panoramas(small_map, moved, tmp_path / "out", workers=1)
    assert not (tmp_path / "out").exists()


def test_interrupted_build_leaves_nothing(tiny_sim_dir, camera, tmp_path, monkeypatch):
    calls = []
    real = build_module.process_panorama

    def interrupted_on_third(task):
        calls.append(task.record.id)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(task)

    monkeypatch.setattr(build_module, "process_panorama", interrupted_on_third)
    with pytest.raises(KeyboardInterrupt):
        build_map(tiny_sim_dir / "panoramas", tmp_path / "map", SMALL, camera=camera, workers=1)
    assert list(tmp_path.iterdir()) == []

    def failing_index(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(build_module, "process_panorama", real)
    monkeypatch.setattr(build_module, "_build_index", failing_index)
    with pytest.raises(RuntimeError, match="disk full"):
        build_map(tiny_sim_dir / "panoramas", tmp_path / "map", SMALL, camera=camera, workers=1)
    assert list(tmp_path.iterdir()) == []


def test_existing_output_and_bad_inputs_are_refused(tiny_sim_dir, camera, small_map, tmp_path):
    with pytest.raises(OutputExistsError, match="already exists"):
        build_map(tiny_sim_dir / "panoramas", small_map, SMALL, camera=camera, workers=1)
    no_mser = SMALL.model_copy(
        update={"features": SMALL.features.model_copy(update={"mser_max_features": 0})}
    )
    with pytest.raises(MapBuildError, match=r"vocabularies are for bags \['sift', 'mser'\]"):
        build_map(
            tiny_sim_dir / "panoramas", tmp_path / "m", no_mser, camera=camera, vocabulary_from=small_map
        )
    huge = SMALL.model_copy(
        update={"vocabulary": SMALL.vocabulary.model_copy(update={"min_descriptors_per_word": 10**9})}
    )
    with pytest.raises(MapBuildError, match="vocabulary sift: only"):
        build_map(tiny_sim_dir / "panoramas", tmp_path / "m", huge, camera=camera, workers=1)
    assert not (tmp_path / "m").exists()


def test_views_without_images_and_a_sift_only_map(tiny_sim_dir, camera, tmp_path):
    config = SMALL.model_copy(
        update={
            "images": SMALL.images.model_copy(update={"store": False}),
            "features": SMALL.features.model_copy(update={"mser_max_features": 0}),
            "query": SMALL.query.model_copy(update={"weights": {"sift": 1.0}}),
        }
    )
    first = subset_set(tiny_sim_dir / "panoramas", tmp_path / "first3", 3)
    build_map(first, tmp_path / "map", config, camera=camera, workers=1)
    bundle = MapBundle.open(tmp_path / "map")
    assert not bundle.has_images and bundle.bags == ("sift",)
    assert bundle.manifest["counts"]["features_by_bag"] == {"sift": bundle.n_features}
    with pytest.raises(BundleFormatError, match="no view images"):
        bundle.view_image(0)
    features, _ = bundle.features(0)
    assert int(bundle.retriever().retrieve(features).view_ids[0]) == 0


def test_pose_uncertainty_is_carried_per_panorama_with_a_map_wide_override(tiny_sim_dir, small_map):
    # The simulator's exact metadata states nothing: the bundle keeps the "exact" provider default.
    stored = MapBundle.open(small_map).panorama_records
    assert all(r.position_sigma_m == 0.0 and r.heading_sigma_deg == 0.0 for r in stored)
    from geoloc_ros.gis.panorama_set import PanoramaSet
    from geoloc_ros.mapping.build import _with_uncertainty

    records = PanoramaSet.load(tiny_sim_dir / "panoramas").records
    first = records[0].model_copy(update={"position_sigma_m": 0.3})
    cfg = SMALL.model_copy(
        update={"pose_uncertainty": SMALL.pose_uncertainty.model_copy(update={"provider": "streetview"})}
    )
    resolved = _with_uncertainty([first, *records[1:]], cfg)
    assert resolved[0].position_sigma_m == 0.3 and resolved[0].heading_sigma_deg == 1.5
    assert all(r.position_sigma_m == 1.0 and r.heading_sigma_deg == 1.5 for r in resolved[1:])
    override = cfg.model_copy(
        update={
            "pose_uncertainty": cfg.pose_uncertainty.model_copy(
                update={"position_sigma_m": 2.0, "heading_sigma_deg": 3.0}
            )
        }
    )
    assert all(
        r.position_sigma_m == 2.0 and r.heading_sigma_deg == 3.0 for r in _with_uncertainty([first], override)
    )
