"""Fuzzing the map-bundle boundary: every member of a real bundle truncated, flipped or deleted, and
the manifest's claims contradicted. Each case is a clear :class:`GeolocError` (``geoloc`` exits 2 with
one line), never a traceback; ``geoloc map info`` and the localizers agree on what is complete."""

from __future__ import annotations

import json
import shutil

import pytest

from geoloc_ros.cli.main import main
from geoloc_ros.errors import GeolocError
from geoloc_ros.mapping.container import MANIFEST_NAME
from geoloc_ros.mapping.errors import BundleChecksumError, BundleFormatError
from geoloc_ros.mapping.map import MapBundle


@pytest.fixture
def bundle_copy(tiny_map_dir, tmp_path):
    copy = tmp_path / "map"
    shutil.copytree(tiny_map_dir, copy)
    return copy


def _manifest(bundle_dir):
    return json.loads((bundle_dir / MANIFEST_NAME).read_text())


def _write_manifest(bundle_dir, manifest):
    (bundle_dir / MANIFEST_NAME).write_text(json.dumps(manifest))


def test_every_member_truncated_flipped_or_deleted_is_named(bundle_copy):
    members = sorted(_manifest(bundle_copy)["files"])
    assert len(members) > 20
    for name in members:
        path = bundle_copy / name
        original = path.read_bytes()
        flipped = bytearray(original)
        flipped[len(flipped) // 2] ^= 0xFF
        # A flipped byte needs the checksums; truncation and deletion are seen from the sizes.
        for mutated, verify in (
            (bytes(flipped), "full"),
            (original[: len(original) // 2], "sizes"),
            (None, "sizes"),
        ):
            if mutated is None:
                path.unlink()
            else:
                path.write_bytes(mutated)
            with pytest.raises(BundleChecksumError, match=name.replace(".", r"\.")):
                MapBundle.open(bundle_copy, verify=verify)
            path.write_bytes(original)
    MapBundle.open(bundle_copy, verify="full")  # restored


@pytest.mark.parametrize("verify", ["sizes", "none"])
def test_corrupted_records_json_is_a_clear_error_under_light_verification(bundle_copy, verify, capsys):
    target = bundle_copy / "panoramas" / "records.json"
    target.write_bytes(b"[" + b"\x00" * (target.stat().st_size - 1))  # same size
    with pytest.raises(BundleChecksumError, match=r"panoramas/records\.json: cannot read JSON member"):
        MapBundle.open(bundle_copy, verify=verify)
    assert main(["map", "info", str(bundle_copy), "--verify", verify]) == 2
    assert "records.json: cannot read JSON member" in capsys.readouterr().err


def test_a_wrong_vocabulary_word_count_is_refused(bundle_copy):
    manifest = _manifest(bundle_copy)
    bag = next(iter(manifest["vocabularies"]))
    manifest["vocabularies"][bag]["n_words"] += 1
    _write_manifest(bundle_copy, manifest)
    with pytest.raises(BundleFormatError, match=rf"vocabulary/vocabulary_{bag}: .* centroids.*n_words = "):
        MapBundle.open(bundle_copy, verify="full")
    manifest["vocabularies"][bag]["n_words"] = "many"
    _write_manifest(bundle_copy, manifest)
    with pytest.raises(BundleFormatError, match=rf"vocabularies\.{bag}\.n_words must be an integer"):
        MapBundle.open(bundle_copy, verify="none")


@pytest.mark.parametrize("remove", ["vocabulary/", "index/", "cosimilarity/", "topology/", "table"])
def test_map_info_and_the_localizer_agree_on_an_incomplete_bundle(bundle_copy, remove, capsys):
    """A bundle whose retrieval members are gone (files and manifest entries, so checksums pass)."""
    manifest = _manifest(bundle_copy)
    if remove == "table":
        manifest.pop("vocabularies")
    else:
        for name in [n for n in manifest["files"] if n.startswith(remove)]:
            (bundle_copy / name).unlink()
            del manifest["files"][name]
    _write_manifest(bundle_copy, manifest)
    with pytest.raises(BundleFormatError, match="incomplete map") as refused:
        MapBundle.open(bundle_copy, verify="full")
    assert main(["map", "info", str(bundle_copy)]) == 2
    err = capsys.readouterr().err
    assert str(refused.value) in err and "Traceback" not in err


def test_manifest_path_traversal_and_absolute_names_are_refused_by_map_info(bundle_copy, tmp_path, capsys):
    from geoloc_ros.mapping.container import sha256_of

    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0")
    for name in ("../secret.txt", str(secret)):
        manifest = _manifest(bundle_copy)
        manifest["files"][name] = {"bytes": secret.stat().st_size, "sha256": sha256_of(secret)}
        _write_manifest(bundle_copy, manifest)
        assert main(["map", "info", str(bundle_copy)]) == 2
        assert "member name" in capsys.readouterr().err
        with pytest.raises(GeolocError):
            MapBundle.open(bundle_copy, verify="none")
        del manifest["files"][name]
        _write_manifest(bundle_copy, manifest)
