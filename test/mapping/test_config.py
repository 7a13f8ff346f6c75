from pathlib import Path

import pytest

from geoloc_ros.bovw.features import FeatureConfig
from geoloc_ros.errors import ConfigError
from geoloc_ros.mapping.build import load_build_config
from geoloc_ros.mapping.config import MapBuildConfig


def test_defaults_are_the_paper_method_with_larger_vocabularies():
    cfg = MapBuildConfig()
    assert cfg.views.num_yaws == 12 and cfg.views.virtual_offsets_m == (-4.0, 4.0)
    assert cfg.vocabulary.sift.n_words == 30000 and cfg.vocabulary.mser.n_words == 8000
    assert cfg.vocabulary.training == "two_level" and cfg.index.tf_transform == "sqrt"
    assert cfg.bag_names() == ("sift", "mser")
    assert cfg.tiles.tile_size_m == 250.0 and cfg.images.store


def test_yaml_overrides_and_errors_name_the_field(tmp_path):
    path = tmp_path / "build.yaml"
    path.write_text(
        "views:\n  num_yaws: 8\nvocabulary:\n  sift:\n    n_words: 300\nfeatures:\n  mser_max_features: 0\n"
    )
    cfg = load_build_config(path)
    assert cfg.views.num_yaws == 8 and cfg.vocabulary.sift.n_words == 300 and cfg.bag_names() == ("sift",)
    path.write_text("tiles:\n  tile_size_m: -5\n")
    with pytest.raises(ConfigError, match=r"build.yaml: tiles.tile_size_m"):
        load_build_config(path)
    path.write_text("tile:\n  tile_size_m: 100\n")
    with pytest.raises(ConfigError, match=r"build.yaml: tile: Extra inputs"):
        load_build_config(path)
    path.write_text("query:\n  weights: {sift: 1.0, orb: 1.0}\n")
    with pytest.raises(ConfigError, match="unknown bag"):
        load_build_config(path)


def test_the_shipped_fast_build_config_detects_sift_at_the_query_scale():
    cfg = load_build_config(Path(__file__).parents[2] / "config" / "map_build_fast.yaml")
    assert cfg.features.sift_scale == FeatureConfig.fast().sift_scale == 0.5
    # Everything else as the defaults: MSER and descriptors stay compatible with the queries.
    assert cfg.model_copy(update={"features": FeatureConfig()}) == MapBuildConfig()
