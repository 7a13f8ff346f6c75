"""Street View depth_map decoder and metadata importer (real fixture + a hand-written encoder)."""

from __future__ import annotations

import base64
import json
import shutil
import struct
import zlib
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest

from geoloc_ros.errors import GeolocError
from geoloc_ros.gis.depth.streetview import (
    decode_depth_map,
    encoded_depth_from_text,
    load_depth_file,
    load_depth_map_file,
)
from geoloc_ros.gis.errors import GisError, StreetViewError
from geoloc_ros.gis.panorama_set import PanoramaSet
from geoloc_ros.gis.streetview import import_streetview, load_metadata, parse_metadata

FIXTURE_ID = "M0zT0mYKzPobhRw0G3AXQg"


@pytest.fixture(scope="module")
def gsv_dir(shared_dir: Path) -> Path:
    folder = shared_dir / "fixtures" / "gsv"
    if not (folder / f"{FIXTURE_ID}.xml").is_file():
        pytest.skip(f"Street View fixture missing in {folder}")
    return folder


def body_directions(width: int, height: int) -> np.ndarray:
    """Body-frame (x forward, y left, z up) unit rays, written out from the public format."""
    u, v = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
    clockwise = np.deg2rad((u / width - 0.5) * 360.0)
    elevation = np.deg2rad(90.0 - (v + 0.5) / height * 180.0)
    return np.stack(
        [np.cos(elevation) * np.cos(clockwise), -np.cos(elevation) * np.sin(clockwise), np.sin(elevation)],
        axis=-1,
    )


# ---------------------------------------------------------------------------- real fixture
def test_real_fixture_decodes_planes_size_and_ground(gsv_dir: Path) -> None:
    depth = load_depth_map_file(gsv_dir / f"{FIXTURE_ID}.xml")
    assert (depth.width, depth.height) == (512, 256)
    assert depth.num_planes == 80
    counts = depth.plane_pixel_counts()
    assert counts.sum() == 512 * 256
    assert np.all(depth.plane_indices[0] == 0)  # the top row is sky
    ground = depth.ground_plane()
    assert ground == 1
    assert np.all(depth.plane_indices[-1] == ground)  # straight down is the ground
    # Normal pointing up, plane ~2.5-3 m below the camera (Street View cameras ride ~2.5 m high).
    assert depth.normals[ground, 2] > 0.99
    height = depth.camera_height_m()
    assert height is not None and 2.3 < height < 3.2
    assert height == pytest.approx(2.7325, abs=1e-3)


def test_real_fixture_axis_convention_is_self_consistent(gsv_dir: Path) -> None:
    """Every labelled pixel sees the front face of its plane, and its range lies on that plane."""
    depth = load_depth_map_file(gsv_dir / f"{FIXTURE_ID}.xml")
    rays = body_directions(depth.width, depth.height)
    labels = depth.plane_indices
    labelled = labels > 0
    cosine = np.einsum("hwc,hwc->hw", rays, depth.normals[labels])
    assert np.all(cosine[labelled] < 0)
    ranges = depth.range_map()
    assert ranges.dtype == np.float32 and ranges.shape == (256, 512)
    assert np.all(ranges[~labelled] == 0)
    assert np.all(ranges[labelled] > 0)
    points = rays * ranges[..., None]
    residual = np.einsum("hwc,hwc->hw", points, depth.normals[labels]) + depth.distances[labels]
    assert np.max(np.abs(residual[labelled]) / ranges[labelled]) < 1e-4
    # Straight down the range is the camera height.
    assert ranges[-1].mean() == pytest.approx(depth.camera_height_m(), rel=0.01)


def test_real_fixture_range_map_at_other_sizes_keeps_planes_exact(gsv_dir: Path) -> None:
    depth = load_depth_map_file(gsv_dir / f"{FIXTURE_ID}.xml")
    fine = depth.range_map(2048, 1024)
    assert fine.shape == (1024, 2048)
    rays = body_directions(2048, 1024)
    # Labels of the native cell each fine pixel falls in (4x4 blocks).
    labels = np.repeat(np.repeat(depth.plane_indices, 4, axis=0), 4, axis=1)
    ok = fine > 0
    assert ok.mean() > 0.4
    residual = (
        np.einsum("hwc,hwc->hw", rays * fine[..., None], depth.normals[labels]) + depth.distances[labels]
    )
    assert np.max(np.abs(residual[ok]) / fine[ok]) < 1e-4
    with pytest.raises(StreetViewError, match="2:1"):
        depth.range_map(100, 100)


def test_real_fixture_metadata(gsv_dir: Path) -> None:
    meta = load_metadata(gsv_dir / f"{FIXTURE_ID}.xml")
    assert meta.pano_id == FIXTURE_ID
    assert (meta.lat, meta.lng) == (-22.909412, -68.198628)
    assert meta.elevation_wgs84_m == pytest.approx(2486.307625)
    assert meta.pano_yaw_deg == pytest.approx(333.91998)
    assert (meta.tilt_yaw_deg, meta.tilt_pitch_deg) == (83.63, 2.33)
    assert (meta.image_width, meta.image_height) == (13312, 6656)
    assert [link.pano_id for link in meta.links] == ["h-bTdJL7Y3582auAROSgqg", "TQSoRUzRpsAnQaAXh1BvIQ"]
    assert [link.yaw_deg for link in meta.links] == [155.09, 333.44998]
    assert meta.captured_at() == datetime(2012, 8, 1, tzinfo=timezone.utc)
    assert meta.country == "Chile"
    assert meta.depth_map is not None and meta.depth_map.startswith("eJzt")

    record = meta.to_record("images/x.jpg", depth_gsv="depth/x.txt", camera_height_m=2.7)
    assert record.id == FIXTURE_ID
    assert (record.lat, record.lon, record.alt) == (meta.lat, meta.lng, meta.elevation_wgs84_m)
    assert record.heading_deg == pytest.approx(333.91998)
    assert (record.pitch_deg, record.roll_deg) == (0.0, 0.0)
    assert record.links == ["h-bTdJL7Y3582auAROSgqg", "TQSoRUzRpsAnQaAXh1BvIQ"]
    assert record.depth_gsv == "depth/x.txt" and record.camera_height_m == 2.7


def test_tilt_decomposition_limits() -> None:
    base = {"pano_id": "p", "lat": 0.0, "lng": 0.0, "pano_yaw_deg": 30.0, "tilt_pitch_deg": 3.0}
    # Leaning towards the heading: pure pitch (forward side down); towards the right: pure roll.
    ahead = parse_metadata(json.dumps(_cbk_json({**base, "tilt_yaw_deg": 30.0})))
    assert ahead.tilt_pitch_roll_deg() == pytest.approx((3.0, 0.0), abs=1e-9)
    right = parse_metadata(json.dumps(_cbk_json({**base, "tilt_yaw_deg": 120.0})))
    assert right.tilt_pitch_roll_deg() == pytest.approx((0.0, 3.0), abs=1e-9)
    record = right.to_record("i.jpg", apply_tilt=True)
    assert (record.pitch_deg, record.roll_deg) == pytest.approx((0.0, 3.0), abs=1e-9)


def test_depth_file_accepts_bare_string_xml_and_json(gsv_dir: Path, tmp_path: Path) -> None:
    xml_path = gsv_dir / f"{FIXTURE_ID}.xml"
    encoded = encoded_depth_from_text(xml_path.read_text(encoding="utf-8"))
    (tmp_path / "bare.txt").write_text("\n" + encoded + "\n", encoding="utf-8")
    (tmp_path / "meta.json").write_text(json.dumps({"model": {"depth_map": encoded}}), encoding="utf-8")
    reference = load_depth_file(xml_path)
    np.testing.assert_array_equal(load_depth_file(tmp_path / "bare.txt"), reference)
    np.testing.assert_array_equal(load_depth_file(tmp_path / "meta.json"), reference)
    assert load_depth_file(xml_path, 1024, 512).shape == (512, 1024)


def test_import_streetview_builds_a_loadable_panorama_set(gsv_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "download"
    src.mkdir()
    shutil.copy(gsv_dir / f"{FIXTURE_ID}.xml", src)
    # Any real 2:1 image will do for the importer; the fixture's own image is of another panorama.
    shutil.copy(gsv_dir / "pano_lepFQSQxEEGAw4PPqR_9Ag.jpg", src / f"pano_{FIXTURE_ID}.jpg")
    assert import_streetview(src, tmp_path / "set") == 1
    pano_set = PanoramaSet.load(tmp_path / "set")
    record = pano_set[FIXTURE_ID]
    assert record.heading_deg == pytest.approx(333.91998)
    assert record.camera_height_m == pytest.approx(2.7325, abs=1e-3)
    assert pano_set.load_image(record).shape == (512, 1024, 3)
    depth = pano_set.load_depth(record)
    assert depth is not None and depth.shape == (256, 512)
    np.testing.assert_array_equal(depth, load_depth_file(gsv_dir / f"{FIXTURE_ID}.xml"))


def test_import_streetview_names_missing_image(gsv_dir: Path, tmp_path: Path) -> None:
    src = tmp_path / "download"
    src.mkdir()
    shutil.copy(gsv_dir / f"{FIXTURE_ID}.xml", src)
    with pytest.raises(StreetViewError, match=f"{FIXTURE_ID}.xml: no image"):
        import_streetview(src, tmp_path / "set")
    assert not (tmp_path / "set").exists()


# ---------------------------------------------------------------------------- synthetic encoder
def _community_rays(width: int, height: int) -> np.ndarray:
    """Street View frame rays of each raw index pixel (x right, y back, z down; mirrored columns),
    as the community decoders (GSVPanoDepth.js) define them."""
    x, y = np.meshgrid(np.arange(width, dtype=float), np.arange(height, dtype=float))
    theta = (height - y - 0.5) / height * np.pi
    phi = (width - x - 0.5) / width * 2.0 * np.pi + np.pi / 2.0
    return np.stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)], axis=-1)


def encode_depth_map(planes: np.ndarray, width: int = 64, height: int = 32) -> str:
    """Hand-written encoder: label every raw pixel with the nearest plane it hits."""
    rays = _community_rays(width, height)
    best = np.full((height, width), np.inf)
    labels = np.zeros((height, width), dtype=np.uint8)
    for i, (nx, ny, nz, d) in enumerate(planes):
        if i == 0:
            continue
        cosine = rays @ np.array([nx, ny, nz])
        with np.errstate(divide="ignore"):
            t = np.where(cosine < -1e-9, -d / cosine, np.inf)
        closer = t < best
        best[closer] = t[closer]
        labels[closer] = i
    raw = struct.pack("<BHHHB", 8, len(planes), width, height, 8) + labels.tobytes()
    raw += np.asarray(planes, dtype="<f4").tobytes()
    return base64.urlsafe_b64encode(zlib.compress(raw)).decode("ascii").rstrip("=")


# Street View frame: ground 2.5 m below (z down), a wall 6 m to the right, a wall 20 m behind.
SYNTHETIC_PLANES = np.array([[0, 0, 0, 0], [0, 0, -1, 2.5], [-1, 0, 0, 6.0], [0, -1, 0, 20.0]], dtype=float)


def test_synthetic_round_trip_places_planes_in_the_body_frame() -> None:
    depth = decode_depth_map(encode_depth_map(SYNTHETIC_PLANES))
    assert (depth.width, depth.height, depth.num_planes) == (64, 32, 4)
    # Body frame: ground below with an up normal, right wall on -y, back wall on -x.
    np.testing.assert_allclose(depth.normals[1:], [[0, 0, 1], [0, 1, 0], [1, 0, 0]], atol=1e-6)
    np.testing.assert_allclose(depth.distances[1:], [2.5, 6.0, 20.0], atol=1e-6)
    ranges = depth.range_map()
    rays = body_directions(64, 32)
    # Column 48 (azimuth +90°, the right) at the horizon row sees the right wall at 6 m.
    horizon = 15
    assert depth.plane_indices[horizon, 48] == 2
    assert ranges[horizon, 48] == pytest.approx(6.0 / (-rays[horizon, 48, 1]), rel=1e-5)
    # Column 0 (behind) sees the back wall; column 16 (left) sees nothing at the horizon.
    assert depth.plane_indices[horizon, 0] == 3
    assert depth.plane_indices[horizon - 4, 16] == 0 and ranges[horizon - 4, 16] == 0
    assert depth.camera_height_m() == pytest.approx(2.5)


def test_decoder_errors_name_the_source() -> None:
    good = encode_depth_map(SYNTHETIC_PLANES)
    with pytest.raises(StreetViewError, match=r"pano\.xml: .*URL-safe base64 \(character '\+'\)"):
        decode_depth_map(good[:10] + "+" + good[11:], "pano.xml")
    with pytest.raises(StreetViewError, match=r"pano\.xml: depth_map is not zlib"):
        decode_depth_map(base64.urlsafe_b64encode(b"not zlib at all").decode(), "pano.xml")
    with pytest.raises(StreetViewError, match="truncated"):
        raw = zlib.decompress(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
        decode_depth_map(base64.urlsafe_b64encode(zlib.compress(raw[:-20])).decode(), "pano.xml")
    with pytest.raises(StreetViewError, match="empty"):
        decode_depth_map("  \n")
    bad_grid = struct.pack("<BHHHB", 8, 1, 10, 10, 8) + bytes(100) + bytes(16)
    with pytest.raises(StreetViewError, match="2:1"):
        decode_depth_map(base64.urlsafe_b64encode(zlib.compress(bad_grid)).decode())
    bad_label = struct.pack("<BHHHB", 8, 1, 4, 2, 8) + bytes([0, 0, 0, 3, 0, 0, 0, 0]) + bytes(16)
    with pytest.raises(StreetViewError, match="plane 3, only 1 planes"):
        decode_depth_map(base64.urlsafe_b64encode(zlib.compress(bad_label)).decode())


def test_decompression_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    """The campaign's case: a small XML whose depth_map inflates to far more than any depth map."""
    from geoloc_ros.limits import MAX_DEPTH_DECODED_BYTES, MAX_DEPTH_TEXT_BYTES

    header = struct.pack("<BHHHB", 8, 1, 512, 256, 8)
    bomb = zlib.compress(header + bytes(4 * MAX_DEPTH_DECODED_BYTES), 9)
    encoded = base64.urlsafe_b64encode(bomb).decode().rstrip("=")
    xml = tmp_path / "bomb.xml"
    xml.write_text(f"<panorama><model><depth_map>{encoded}</depth_map></model></panorama>")
    assert xml.stat().st_size < 200_000
    with pytest.raises(StreetViewError, match=r"bomb\.xml: depth_map expands beyond the limit"):
        load_depth_map_file(xml)
    huge = tmp_path / "huge.xml"
    with huge.open("wb") as fh:  # sparse: no disk space used
        fh.truncate(MAX_DEPTH_TEXT_BYTES + 1)
    with pytest.raises(StreetViewError, match=r"huge\.xml: Street View depth file of .* exceeds the limit"):
        load_depth_map_file(huge)
    with pytest.raises(StreetViewError, match=r"huge\.xml: Street View metadata file of .* exceeds"):
        load_metadata(huge)
    with pytest.raises(StreetViewError, match=r"depth_map string of .* exceeds the limit"):
        decode_depth_map("A" * (MAX_DEPTH_TEXT_BYTES + 1))


def _cbk_json(fields: dict[str, object]) -> dict[str, object]:
    return {
        "Data": {"image_width": "13312", "image_height": "6656", "image_date": "2019-06"},
        "Projection": {
            "pano_yaw_deg": str(fields["pano_yaw_deg"]),
            "tilt_yaw_deg": str(fields.get("tilt_yaw_deg", 0.0)),
            "tilt_pitch_deg": str(fields.get("tilt_pitch_deg", 0.0)),
        },
        "Location": {"panoId": fields["pano_id"], "lat": str(fields["lat"]), "lng": str(fields["lng"])},
        "Links": [{"yawDeg": "12.5", "panoId": "next", "description": "Main St"}],
        "model": {"depth_map": encode_depth_map(SYNTHETIC_PLANES)},
    }


def test_json_metadata_layout() -> None:
    meta = parse_metadata(
        json.dumps(_cbk_json({"pano_id": "abc", "lat": 48.87, "lng": 2.29, "pano_yaw_deg": 91.5}))
    )
    assert (meta.pano_id, meta.lat, meta.lng, meta.pano_yaw_deg) == ("abc", 48.87, 2.29, 91.5)
    assert (
        meta.links[0].pano_id == "next" and meta.links[0].yaw_deg == 12.5 and meta.links[0].text == "Main St"
    )
    assert meta.captured_at() == datetime(2019, 6, 1, tzinfo=timezone.utc)
    decoded = meta.decode_depth()
    assert decoded is not None and decoded.num_planes == 4


def test_metadata_errors_name_file_and_field(tmp_path: Path) -> None:
    bad_yaw = (
        '<panorama><data_properties pano_id="p" lat="1" lng="2"/>'
        '<projection_properties pano_yaw_deg="north"/></panorama>'
    )
    with pytest.raises(StreetViewError, match=r"meta\.xml: pano_yaw_deg"):
        parse_metadata(bad_yaw, "meta.xml")
    with pytest.raises(StreetViewError, match=r"meta\.xml: missing <projection_properties>"):
        parse_metadata('<panorama><data_properties pano_id="p" lat="1" lng="2"/></panorama>', "meta.xml")
    with pytest.raises(StreetViewError, match=r"meta\.xml: invalid XML"):
        parse_metadata("<panorama>", "meta.xml")
    with pytest.raises(StreetViewError, match=r"meta\.json: lat"):
        parse_metadata(
            json.dumps(_cbk_json({"pano_id": "p", "lat": 123.0, "lng": 0.0, "pano_yaw_deg": 0})), "meta.json"
        )
    with pytest.raises(StreetViewError, match="not found"):
        load_metadata(tmp_path / "missing.xml")
    with pytest.raises(StreetViewError, match="no <depth_map>"):
        encoded_depth_from_text("<panorama/>", "x.xml")
    with pytest.raises(StreetViewError, match=r"t\.txt: not a Street View metadata document") as info:
        parse_metadata("plain text", "t.txt")
    assert isinstance(info.value, GisError) and isinstance(info.value, GeolocError)


def test_import_streetview_command(gsv_dir: Path, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from geoloc_ros.cli.gis import gis_group

    src = tmp_path / "download"
    src.mkdir()
    shutil.copy(gsv_dir / f"{FIXTURE_ID}.xml", src)
    shutil.copy(gsv_dir / "pano_lepFQSQxEEGAw4PPqR_9Ag.jpg", src / f"{FIXTURE_ID}.jpg")
    out = tmp_path / "set"
    runner = CliRunner()
    result = runner.invoke(
        gis_group, ["import-streetview", str(src), "--out", str(out), "--origin", "-22.9,-68.2,2480"]
    )
    assert result.exit_code == 0, result.output
    assert f"imported 1 panoramas into {out}" in result.output
    pano_set = PanoramaSet.load(out)
    assert pano_set.origin.alt_m == 2480.0
    bad = runner.invoke(
        gis_group, ["import-streetview", str(src), "--out", str(tmp_path / "x"), "--origin", "1,2,3,4"]
    )
    assert bad.exit_code == 2 and "--origin" in bad.output
