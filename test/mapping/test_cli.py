"""``geoloc map build / info / add`` (geoloc_ros/cli/map.py)."""

import json
import shutil

import pytest
import yaml
from click.testing import CliRunner

from geoloc_ros.cli.main import cli, main
from geoloc_ros.gis.panorama_set import INDEX_NAME, ORIGIN_NAME
from geoloc_ros.mapping.map import MapBundle

CONFIG = {
    "views": {"num_yaws": 4, "virtual_offsets_m": [-4.0]},
    "features": {"sift_max_features": 200, "mser_max_features": 60},
    "vocabulary": {"sift": {"n_words": 32, "n_iter": 4}, "mser": {"n_words": 16, "n_iter": 4}},
}


@pytest.fixture
def inputs(tiny_sim_dir, tmp_path):
    """A 4-panorama set (the first of the tiny scenario), the full set, the camera and a config file."""
    panoramas = tiny_sim_dir / "panoramas"
    first = tmp_path / "first4"
    first.mkdir()
    lines = (panoramas / INDEX_NAME).read_text().splitlines()[:4]
    (first / INDEX_NAME).write_text("\n".join(lines) + "\n")
    shutil.copy(panoramas / ORIGIN_NAME, first / ORIGIN_NAME)
    (first / "images").symlink_to(panoramas / "images")
    config = tmp_path / "build.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    return first, panoramas, tiny_sim_dir / "drive" / "camera.yaml", config


def test_build_info_add(inputs, tmp_path, capsys):
    first, panoramas, camera, config = inputs
    bundle = tmp_path / "map"
    build = [
        "map",
        "build",
        str(first),
        "--out",
        str(bundle),
        "--camera",
        str(camera),
        "--config",
        str(config),
    ]
    assert main([*build, "--workers", "1"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {bundle}: 4 panoramas" in out and "-4.0m" in out and "kB per view" in out
    assert main([*build, "--workers", "1"]) == 2  # exists: a one-line error
    assert "already exists (pass --overwrite" in capsys.readouterr().err

    result = CliRunner().invoke(cli, ["map", "info", str(bundle)])
    assert result.exit_code == 0, result.output
    assert "panoramas: 4; views:" in result.output and "checksums: verified" in result.output
    assert "vocabularies: sift 32 words" in result.output
    result = CliRunner().invoke(cli, ["map", "info", str(bundle), "--verify", "sizes", "--json"])
    info = json.loads(result.output)
    assert info["counts"]["panoramas"] == 4 and info["verified"] == "sizes"
    assert info["virtual_views"]["table"][0]["offset_m"] == -4.0

    extended = tmp_path / "extended"
    assert (
        main(["map", "add", str(bundle), str(panoramas), "--out", str(extended), "--workers", "1", "--json"])
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["added_panoramas"] == 4 and summary["n_panoramas"] == 8
    assert MapBundle.open(extended).vocabularies.bag_sizes == {"sift": 32, "mser": 16}

    descriptors = extended / "features" / "descriptors.npy"
    data = bytearray(descriptors.read_bytes())
    data[-1] ^= 0xFF
    descriptors.write_bytes(bytes(data))
    assert main(["map", "info", str(extended)]) == 2
    error = capsys.readouterr().err.strip()
    assert error.startswith("geoloc: error:") and "descriptors.npy: checksum mismatch" in error
    assert "\n" not in error


def test_bad_config_is_named(inputs, tmp_path, capsys):
    first, _, _, config = inputs
    config.write_text("tiles: {tile_size_m: 0}\n")
    assert main(["map", "build", str(first), "--out", str(tmp_path / "m"), "--config", str(config)]) == 2
    assert "build.yaml: tiles.tile_size_m" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
