"""Depth formats by name: a toy format is one loader plus configuration (the record's depth_format)."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from geoloc_ros.gis.depth import (
    DEFAULT_DEPTH_FORMAT,
    STREETVIEW_DEPTH_FORMAT,
    depth_formats,
    depth_loader,
    register_depth_format,
    unregister_depth_format,
)
from geoloc_ros.gis.depth.png_mm import encode_depth_png
from geoloc_ros.gis.errors import DepthFormatError, PanoramaSetError
from geoloc_ros.gis.panorama_set import INDEX_NAME, PanoramaSet

TOY = "toy_text_dm"  # decimetres as whitespace-separated text, one image row a line


def _load_toy(path: Path, what: str, width: int | None = None) -> np.ndarray:
    try:
        rows = np.loadtxt(path, dtype=np.float64, ndmin=2)
    except ValueError as exc:
        raise PanoramaSetError(f"{path}: not a toy depth file of {what}: {exc}") from None
    return (rows / 10.0).astype(np.float32)


@pytest.fixture
def toy_format():
    register_depth_format(TOY, _load_toy)
    yield TOY
    unregister_depth_format(TOY)


def _write_set(root: Path, depth_entries: dict[str, object]) -> None:
    root.mkdir()
    cv2.imwrite(str(root / "a.png"), np.zeros((4, 8, 3), np.uint8))
    record = {"id": "a", "lat": 45.0, "lon": 7.0, "heading_deg": 0.0, "image": "a.png", **depth_entries}
    (root / INDEX_NAME).write_text(json.dumps(record) + "\n")


def test_a_registered_toy_format_loads_through_the_panorama_set(tmp_path: Path, toy_format: str) -> None:
    decimetres = np.arange(32, dtype=np.float64).reshape(4, 8)
    _write_set(tmp_path / "set", {"depth": "a.txt", "depth_format": toy_format})
    np.savetxt(tmp_path / "set" / "a.txt", decimetres)
    pano_set = PanoramaSet.load(tmp_path / "set")
    depth = pano_set.load_depth(pano_set["a"])
    assert depth is not None and depth.dtype == np.float32
    np.testing.assert_allclose(depth, decimetres / 10.0, rtol=1e-6)
    assert toy_format in depth_formats()


def test_default_format_is_the_millimetre_png_and_the_builtins_are_listed(tmp_path: Path) -> None:
    _write_set(tmp_path / "set", {"depth": "a_depth.png"})
    metres = np.full((4, 8), 2.5, dtype=np.float32)
    (tmp_path / "set" / "a_depth.png").write_bytes(encode_depth_png(metres))
    pano_set = PanoramaSet.load(tmp_path / "set")
    assert pano_set["a"].depth_format is None
    np.testing.assert_array_equal(pano_set.load_depth(pano_set["a"]), metres)
    assert {DEFAULT_DEPTH_FORMAT, STREETVIEW_DEPTH_FORMAT} <= set(depth_formats())


def test_unknown_and_duplicate_formats_are_refused(tmp_path: Path, toy_format: str) -> None:
    with pytest.raises(DepthFormatError, match="already registered"):
        register_depth_format(toy_format, _load_toy)
    with pytest.raises(DepthFormatError, match="already registered"):
        register_depth_format(DEFAULT_DEPTH_FORMAT, _load_toy)
    with pytest.raises(DepthFormatError, match=r"unknown depth format 'nope' \(known: .*png_mm"):
        depth_loader("nope")
    _write_set(tmp_path / "set", {"depth": "a.txt", "depth_format": "nope"})
    (tmp_path / "set" / "a.txt").write_text("1 2\n")
    pano_set = PanoramaSet.load(tmp_path / "set")
    with pytest.raises(DepthFormatError, match="'nope'"):
        pano_set.load_depth(pano_set["a"])


def test_a_module_path_names_a_format_without_registration() -> None:
    from geoloc_ros.gis.depth import png_mm

    assert depth_loader("geoloc_ros.gis.depth.png_mm") is png_mm.load_depth
    with pytest.raises(DepthFormatError, match="has no load_depth"):
        depth_loader("geoloc_ros.gis.errors")
