"""The panorama-set format: writing, loading, validation messages, depth encodings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from geoloc_ros.geo.enu import GeoOrigin, enu_to_geodetic
from geoloc_ros.gis.depth.png_mm import encode_depth_png
from geoloc_ros.gis.errors import GisError
from geoloc_ros.gis.errors import PanoramaSetError as ErrorsModuleError
from geoloc_ros.gis.panorama_set import (
    INDEX_NAME,
    PanoramaRecord,
    PanoramaSet,
    PanoramaSetError,
    PanoramaSetWriter,
)
from geoloc_ros.io.atomic import OutputExistsError

ORIGIN = GeoOrigin(45.0, 7.0, 250.0)


def _image(seed: int, width: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (width // 2, width, 3), dtype=np.uint8)


def _record(pano_id: str, east: float, **extra: object) -> PanoramaRecord:
    lat, lon, alt = enu_to_geodetic([east, 0.0, 2.5], ORIGIN)
    return PanoramaRecord(
        id=pano_id, lat=float(lat), lon=float(lon), alt=float(alt), heading_deg=90.0, image="pending", **extra
    )


def _write_set(root: Path, with_origin: bool = True) -> list[PanoramaRecord]:
    depth = np.linspace(1.0, 30.0, 32 * 64, dtype=np.float32).reshape(32, 64)
    depth[:4] = 0.0
    with PanoramaSetWriter(root, origin=ORIGIN if with_origin else None, image_ext=".png") as writer:
        first = writer.add(_record("a", 0.0, links=["b"]), _image(1), depth)
        second = writer.add(_record("b", 10.0, links=["a", "elsewhere"]), _image(2))
    assert writer.count == 2
    return [first, second]


def test_write_and_load_round_trip(tmp_path: Path) -> None:
    written = _write_set(tmp_path / "set")
    pano_set = PanoramaSet.load(tmp_path / "set")
    assert len(pano_set) == 2 and [r.id for r in pano_set] == ["a", "b"]
    assert pano_set.records == written
    assert pano_set["a"].image == "images/a.png" and pano_set["a"].depth == "images/a_depth.png"
    assert pano_set.index_of("b") == 1
    assert pano_set.origin == ORIGIN
    np.testing.assert_allclose(pano_set.positions_enu(), [[0.0, 0.0, 2.5], [10.0, 0.0, 2.5]], atol=1e-6)
    np.testing.assert_array_equal(pano_set.load_image(pano_set["a"]), _image(1))  # PNG: lossless
    depth = pano_set.load_depth(pano_set["a"])
    assert depth is not None and depth.dtype == np.float32
    expected = np.linspace(1.0, 30.0, 32 * 64).reshape(32, 64)
    expected[:4] = 0.0
    np.testing.assert_allclose(depth, expected, atol=0.5e-3)  # millimetre PNG
    assert pano_set.load_depth(pano_set["b"]) is None


def test_origin_defaults_to_the_first_panorama(tmp_path: Path) -> None:
    _write_set(tmp_path / "set", with_origin=False)
    pano_set = PanoramaSet.load(tmp_path / "set")
    first = pano_set.records[0]
    assert pano_set.origin == GeoOrigin(first.lat, first.lon, first.alt or 0.0)


def test_writer_is_atomic_and_refuses_existing_output(tmp_path: Path) -> None:
    target = tmp_path / "set"
    with pytest.raises(PanoramaSetError, match="must be 2:1"), PanoramaSetWriter(target) as writer:
        writer.add(_record("a", 0.0), np.zeros((10, 30, 3), np.uint8))
    assert not target.exists()
    _write_set(target)
    with pytest.raises(OutputExistsError), PanoramaSetWriter(target):
        pass
    with PanoramaSetWriter(target, overwrite=True) as writer:
        writer.add(_record("z", 0.0), _image(3))
    assert [r.id for r in PanoramaSet.load(target)] == ["z"]


def _rewrite_line(root: Path, line: int, data: dict[str, object] | str) -> None:
    index = root / INDEX_NAME
    lines = index.read_text(encoding="utf-8").splitlines()
    lines[line - 1] = data if isinstance(data, str) else json.dumps(data)
    index.write_text("\n".join(lines) + "\n", encoding="utf-8")


@pytest.mark.parametrize(
    ("line", "change", "message"),
    [
        (2, "{not json", r"panoramas.jsonl:2: invalid JSON"),
        (2, {"drop": "heading_deg"}, r"panoramas.jsonl:2: heading_deg: Field required"),
        (1, {"set": ("lat", 91.0)}, r"panoramas.jsonl:1: lat: Input should be less than or equal to 90"),
        (2, {"set": ("id", "a")}, r"panoramas.jsonl:2: id: duplicate id 'a' \(first on line 1\)"),
        (
            1,
            {"set": ("image", "images/missing.png")},
            r"panoramas.jsonl:1: image: file 'images/missing.png' not found",
        ),
        (
            1,
            {"set": ("image", "/etc/passwd")},
            r"panoramas.jsonl:1: image: Value error, must be a path relative",
        ),
        (2, {"set": ("colour", "red")}, r"panoramas.jsonl:2: colour: Extra inputs are not permitted"),
        (
            1,
            {"set": ("position_sigma_m", -0.5)},
            r"panoramas.jsonl:1: position_sigma_m: Input should be greater than or equal to 0",
        ),
        (2, {"set": ("heading_sigma_deg", "NaN")}, r"panoramas.jsonl:2: heading_sigma_deg: .*finite"),
        (2, {"set": ("heading_sigma_deg", 720.0)}, r"panoramas.jsonl:2: heading_sigma_deg: .*less than"),
        (1, {"set": ("position_sigma_m", "one")}, r"panoramas.jsonl:1: position_sigma_m: .*valid number"),
    ],
)
def test_validation_errors_name_line_and_field(
    tmp_path: Path, line: int, change: object, message: str
) -> None:
    root = tmp_path / "set"
    _write_set(root)
    data = json.loads((root / INDEX_NAME).read_text(encoding="utf-8").splitlines()[line - 1])
    if isinstance(change, str):
        _rewrite_line(root, line, change)
    else:
        assert isinstance(change, dict)
        if "drop" in change:
            del data[change["drop"]]
        else:
            key, value = change["set"]
            data[key] = value
        _rewrite_line(root, line, data)
    with pytest.raises(PanoramaSetError, match=message):
        PanoramaSet.load(root)


def test_set_level_errors(tmp_path: Path) -> None:
    with pytest.raises(PanoramaSetError, match="not a panorama set"):
        PanoramaSet.load(tmp_path)
    (tmp_path / INDEX_NAME).write_text("\n\n", encoding="utf-8")
    with pytest.raises(PanoramaSetError, match="the panorama set is empty"):
        PanoramaSet.load(tmp_path)
    root = tmp_path / "set"
    _write_set(root)
    pano_set = PanoramaSet.load(root)
    with pytest.raises(PanoramaSetError, match="no panorama with id 'nope'"):
        pano_set["nope"]
    (root / "origin.json").write_text('{"lat": 95, "lon": 0}', encoding="utf-8")
    with pytest.raises(PanoramaSetError, match=r"origin\.json: invalid map origin"):
        PanoramaSet.load(root)


def test_image_and_depth_decoding_errors(tmp_path: Path) -> None:
    root = tmp_path / "set"
    _write_set(root)
    cv2.imwrite(str(root / "images" / "b.png"), np.zeros((10, 30, 3), np.uint8))
    (root / "images" / "a_depth.png").write_bytes(b"not a png")
    pano_set = PanoramaSet.load(root)
    with pytest.raises(PanoramaSetError, match=r"b\.png: equirectangular image must be 2:1, got 30x10"):
        pano_set.load_image(pano_set["b"])
    with pytest.raises(PanoramaSetError, match=r"a_depth\.png: cannot decode depth PNG of panorama 'a'"):
        pano_set.load_depth(pano_set["a"])
    cv2.imwrite(str(root / "images" / "a_depth.png"), np.zeros((32, 64), np.uint8))
    with pytest.raises(PanoramaSetError, match="single-channel 16-bit"):
        pano_set.load_depth(pano_set["a"])


def test_depth_png_encoding_marks_unrepresentable_ranges_unknown() -> None:
    png = encode_depth_png(np.array([[0.0, np.nan, 1.2346, 65.535, 70.0, -3.0]]).repeat(2, axis=0))
    raw = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
    assert raw is not None
    assert raw.dtype == np.uint16
    # Millimetres; beyond 65.535 m, NaN and negative ranges become 0 (unknown), never saturated.
    np.testing.assert_array_equal(raw[0], [0, 0, 1235, 65535, 0, 0])


def test_street_view_depth_is_loaded_through_the_decoder(shared_dir: Path, tmp_path: Path) -> None:
    xml = shared_dir / "fixtures" / "gsv" / "M0zT0mYKzPobhRw0G3AXQg.xml"
    if not xml.is_file():
        pytest.skip(f"{xml} is missing")
    root = tmp_path / "set"
    with PanoramaSetWriter(root) as writer:
        shutil.copy(xml, writer.staging_dir / "depth.xml")
        writer.add(_record("gsv", 0.0, depth_gsv="depth.xml"), _image(4))
    pano_set = PanoramaSet.load(root)
    depth = pano_set.load_depth(pano_set["gsv"])
    assert depth is not None and depth.shape == (256, 512) and depth.dtype == np.float32
    assert depth[-1].mean() == pytest.approx(2.73, abs=0.02)


def test_error_class_lives_with_the_gis_errors() -> None:
    assert PanoramaSetError is ErrorsModuleError
    assert issubclass(PanoramaSetError, GisError) and issubclass(PanoramaSetError, ValueError)


def test_pose_uncertainty_defaults_per_provider(tmp_path: Path) -> None:
    from geoloc_ros.gis.panorama_set import PROVIDER_UNCERTAINTY, pose_uncertainty

    root = tmp_path / "set"
    _write_set(root)
    data = json.loads((root / INDEX_NAME).read_text(encoding="utf-8").splitlines()[0])
    data["position_sigma_m"] = 0.7
    _rewrite_line(root, 1, data)
    first, second = PanoramaSet.load(root).records[:2]
    street_view = PROVIDER_UNCERTAINTY["streetview"]
    assert pose_uncertainty(first, street_view).position_sigma_m == 0.7  # stated: kept
    assert pose_uncertainty(first, street_view).heading_sigma_deg == street_view.heading_sigma_deg
    assert pose_uncertainty(second) == PROVIDER_UNCERTAINTY["exact"]  # nothing stated, no default
    assert first.to_json()["position_sigma_m"] == 0.7 and "heading_sigma_deg" not in first.to_json()


def test_plane_depth_is_street_view_planes_not_a_measured_range() -> None:
    assert not _record("a", 0.0).has_plane_depth  # no depth at all
    assert not _record("a", 0.0, depth="d.png").has_plane_depth
    assert not _record("a", 0.0, depth="d.png", depth_gsv="d.xml").has_plane_depth  # the range wins
    assert _record("a", 0.0, depth_gsv="d.xml").has_plane_depth
    assert _record("a", 0.0, depth="d.xml", depth_format="streetview").has_plane_depth
