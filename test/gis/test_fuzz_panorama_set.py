"""Fuzzing the panorama-set boundary: the campaign's broken sets (non-finite fields, images whose
headers claim huge sizes, decompression bombs, all-zero depth) are clear errors or warnings."""

from __future__ import annotations

import base64
import json
import logging
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.geo.enu import GeoOrigin, enu_to_geodetic
from geoloc_ros.gis.panorama_set import (
    INDEX_NAME,
    PanoramaRecord,
    PanoramaSet,
    PanoramaSetError,
    PanoramaSetWriter,
)
from geoloc_ros.gis.streetview import StreetViewError
from geoloc_ros.gis.views import ViewSynthesisConfig
from geoloc_ros.gis.virtual import load_panorama_for_views
from geoloc_ros.limits import MAX_DEPTH_DECODED_BYTES

ORIGIN = GeoOrigin(45.0, 7.0, 250.0)


def _write_set(root: Path) -> None:
    """Two panoramas ``a`` (with a depth PNG) and ``b`` 10 m east, 64x32 PNG images."""
    rng = np.random.default_rng(0)
    depth = np.linspace(1.0, 30.0, 32 * 64, dtype=np.float32).reshape(32, 64)
    with PanoramaSetWriter(root, origin=ORIGIN, image_ext=".png") as writer:
        for pano_id, east in (("a", 0.0), ("b", 10.0)):
            lat, lon, alt = enu_to_geodetic([east, 0.0, 2.5], ORIGIN)
            record = PanoramaRecord(
                id=pano_id, lat=float(lat), lon=float(lon), alt=float(alt), heading_deg=90.0, image="pending"
            )
            image = rng.integers(0, 255, (32, 64, 3), dtype=np.uint8)
            writer.add(record, image, depth if pano_id == "a" else None)


def _edit_record(root: Path, line: int, **changes: object) -> None:
    index = root / INDEX_NAME
    lines = index.read_text(encoding="utf-8").splitlines()
    data = json.loads(lines[line - 1])
    data.update(changes)
    lines[line - 1] = json.dumps(data)
    index.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize("field", ["lat", "lon", "alt", "heading_deg", "pitch_deg"])
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_record_fields_are_refused(tmp_path, field, value):
    root = tmp_path / "set"
    _write_set(root)
    index = root / INDEX_NAME
    lines = index.read_text(encoding="utf-8").splitlines()
    data = json.loads(lines[0])
    data[field] = "__X__"
    lines[0] = json.dumps(data).replace('"__X__"', value)  # JSON's non-standard NaN / Infinity
    index.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(PanoramaSetError, match=rf"panoramas\.jsonl:1: {field}"):
        PanoramaSet.load(root)


def _claim_size(path: Path, width: int, height: int) -> None:
    data = bytearray(path.read_bytes())
    data[16:20], data[20:24] = width.to_bytes(4, "big"), height.to_bytes(4, "big")
    path.write_bytes(bytes(data))


def test_images_whose_header_claims_a_huge_size_are_refused_unread(tmp_path):
    root = tmp_path / "set"
    _write_set(root)
    pano_set = PanoramaSet.load(root)
    _claim_size(root / "images" / "b.png", 80000, 40000)
    with pytest.raises(PanoramaSetError, match=r"b\.png: image of panorama 'b': .*exceeds the limit"):
        pano_set.load_image(pano_set["b"])
    _claim_size(root / "images" / "a_depth.png", 65536, 32768)
    with pytest.raises(PanoramaSetError, match=r"a_depth\.png: depth PNG of panorama 'a': .*exceeds"):
        pano_set.load_depth(pano_set["a"])


def test_a_street_view_depth_bomb_in_a_set_is_refused(tmp_path):
    root = tmp_path / "set"
    _write_set(root)
    bomb = zlib.compress(struct.pack("<BHHHB", 8, 1, 512, 256, 8) + bytes(2 * MAX_DEPTH_DECODED_BYTES), 9)
    encoded = base64.urlsafe_b64encode(bomb).decode()
    (root / "b_depth.xml").write_text(f"<panorama><model><depth_map>{encoded}</depth_map></model></panorama>")
    _edit_record(root, 2, depth_gsv="b_depth.xml")
    pano_set = PanoramaSet.load(root)
    with pytest.raises(StreetViewError, match="decompression bomb"):
        pano_set.load_depth(pano_set["b"])


@pytest.mark.parametrize("known", [0.0, 0.01])
def test_all_zero_or_mostly_empty_depth_warns_and_supports_no_virtual_view(tmp_path, caplog, known):
    root = tmp_path / "set"
    _write_set(root)
    depth = np.zeros((32, 64), np.uint16)
    depth[: round(known * 32 * 64) // 64] = 5000
    cv2.imwrite(str(root / "images" / "a_depth.png"), depth)
    pano_set = PanoramaSet.load(root)
    camera = PinholeCamera.from_hfov(64, 48, 60.0)
    with caplog.at_level(logging.WARNING):
        image, range_map = load_panorama_for_views(pano_set, pano_set["a"], camera, ViewSynthesisConfig())
    assert image.shape == (32, 64, 3) and range_map is None
    assert "panorama a: only" in caplog.text and "depth ignored" in caplog.text
