"""The feature-kind registry: a toy kind registered here builds and queries a tiny map on its own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from geoloc_ros.bovw import kinds
from geoloc_ros.bovw.errors import FeatureKindError
from geoloc_ros.bovw.features import (
    FeatureConfig,
    FeatureExtractor,
    FeatureKind,
    FeatureSet,
    quantize_rootsift,
    rootsift,
)
from geoloc_ros.bovw.kinds import FeatureKindSpec, feature_kind, register_feature_kind

ORB_CODE = 200


class OrbExtractor:
    """Toy kind: ORB's FAST corners (fast, oriented), described with RootSIFT in the shared space."""

    def __init__(self, config: FeatureConfig) -> None:
        self._orb = cv2.ORB.create(nfeatures=400, scaleFactor=1.3, nlevels=6, edgeThreshold=16, patchSize=16)
        self._sift = cv2.SIFT.create()

    def extract(self, grey: np.ndarray, mask: np.ndarray | None) -> FeatureSet:
        height, width = grey.shape
        keypoints = self._orb.detect(grey, mask)
        if keypoints:
            keypoints, descriptors = self._sift.compute(grey, keypoints)
        if not keypoints:
            return FeatureSet.empty((width, height))
        n = len(keypoints)
        return FeatureSet(
            keypoints_xy=np.array([k.pt for k in keypoints], np.float32).reshape(n, 2),
            size=np.array([k.size for k in keypoints], np.float32),
            angle=np.array([k.angle for k in keypoints], np.float32),
            response=np.array([k.response for k in keypoints], np.float32),
            kind=np.full(n, ORB_CODE, np.uint8),
            descriptors=quantize_rootsift(rootsift(descriptors)),
            image_size=(width, height),
        )


@pytest.fixture(scope="module")
def orb_kind() -> Iterator[FeatureKindSpec]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(kinds, "_REGISTRY", dict(kinds._REGISTRY))
        yield register_feature_kind(
            FeatureKindSpec(
                name="orb",
                code=ORB_CODE,
                create=OrbExtractor,
                max_features=lambda config: 400,
                default_words=64,
                map_words=64,
                index_weight=1.0,
                map_weight=1.0,
            )
        )


def test_the_built_in_kinds_keep_their_codes_and_order():
    assert FeatureConfig().kinds == ["sift", "mser"]
    assert feature_kind("sift").code == FeatureKind.SIFT == 0
    assert feature_kind("mser").code == FeatureKind.MSER == 1
    assert feature_kind("mser").on_demand and not feature_kind("sift").on_demand


def test_bad_registrations_and_unknown_kinds_are_refused(orb_kind):
    spec = feature_kind("sift")
    with pytest.raises(FeatureKindError, match="already registered"):
        register_feature_kind(spec)
    with pytest.raises(FeatureKindError, match="taken by 'sift'"):
        register_feature_kind(FeatureKindSpec(**{**spec.__dict__, "name": "other"}))
    with pytest.raises(FeatureKindError, match="128 x uint8"):
        register_feature_kind(
            FeatureKindSpec(**{**spec.__dict__, "name": "binary", "code": 7, "descriptor_dim": 32})
        )
    with pytest.raises(ValueError, match=r"unknown feature kind 'akaze'; registered: .*'orb'"):
        FeatureConfig(kinds=["sift", "akaze"])
    with pytest.raises(FeatureKindError, match="'mser' is not enabled"):
        FeatureExtractor(FeatureConfig(kinds=["sift"])).extract_kind("mser", np.zeros((64, 64), np.uint8))


def test_the_extractor_runs_the_configured_kinds_in_order(orb_kind, textured_image):
    extractor = FeatureExtractor(FeatureConfig(kinds=["orb", "sift"], sift_max_features=100))
    assert extractor.kinds == ("orb", "sift")
    features = extractor.extract(textured_image)
    kind = features.kind
    n_orb = int(np.sum(kind == ORB_CODE))
    assert 0 < n_orb <= 400 and np.all(kind[:n_orb] == ORB_CODE) and np.all(kind[n_orb:] == 0)
    assert len(features) - n_orb == len(
        FeatureExtractor(FeatureConfig(kinds=["sift"], sift_max_features=100)).extract(textured_image)
    )


def test_a_registered_kind_alone_builds_and_queries_a_tiny_map(orb_kind, tiny_sim_dir: Path, tmp_path: Path):
    from geoloc_ros.camera.pinhole import PinholeCamera
    from geoloc_ros.io.drive import DriveBag
    from geoloc_ros.localize.config import LocalizerConfig
    from geoloc_ros.localize.localizer import Localizer
    from geoloc_ros.mapping.build import build_map
    from geoloc_ros.mapping.config import MapBuildConfig
    from geoloc_ros.mapping.map import MapBundle

    config = MapBuildConfig.model_validate(
        {
            "views": {"num_yaws": 4, "virtual_offsets_m": [4.0]},
            "features": {"kinds": ["orb"]},
            "vocabulary": {"others": {"orb": {"n_words": 64, "n_iter": 5, "quantizer": "ivf"}}},
            "query": {"weights": {"orb": 1.0}},
            "cosimilarity": {"top_k": 5},
        }
    )
    camera = PinholeCamera.load(tiny_sim_dir / "drive" / "camera.yaml")
    build_map(tiny_sim_dir / "panoramas", tmp_path / "map", config, camera=camera, workers=1)

    bundle = MapBundle.open(tmp_path / "map")
    assert bundle.bags == ("orb",) and bundle.vocabularies.bag_sizes == {"orb": 64}
    assert bundle.manifest["counts"]["features_by_bag"] == {"orb": bundle.n_features}
    features, _ = bundle.features(3)
    assert len(features) > 50 and np.all(features.kind == ORB_CODE)
    expected = bundle.vocabularies.by_bag["orb"].quantize(np.ascontiguousarray(features.descriptors))
    assert np.array_equal(bundle.words_by_bag(3)["orb"], expected)
    assert int(bundle.retriever().retrieve(features).view_ids[0]) == 3

    # The localizer extracts, retrieves and matches with the toy kind only; some frames localize.
    drive = DriveBag(tiny_sim_dir / "drive")
    localizer_config = LocalizerConfig.model_validate({"features": {"fast": False}})
    localizer = Localizer(bundle, localizer_config, drive.mounting, drive.camera)
    frames = list(drive.frames(max_frames=8))
    prepared = localizer.preparer.prepare(frames[0].image, frames[0].stamp_ns, with_on_demand=True)
    assert len(prepared.features) > 50 and np.all(prepared.features.kind == ORB_CODE)
    truth = np.load(tiny_sim_dir / "drive" / "groundtruth.npz")
    errors_m = []
    for frame in frames:
        localizer.reset()
        result = localizer.localize(frame.image, frame.stamp_ns)
        assert result.n_matches > 0 and len(result.candidates) > 0
        if result.estimate is not None:
            position = truth["position_enu"][np.flatnonzero(truth["stamp_ns"] == frame.stamp_ns)[0]]
            errors_m.append(float(np.linalg.norm(result.estimate.position[:2] - position[:2])))
    assert errors_m and max(errors_m) < 1.0
