"""Street-View-style coarse depth: byte layout of the real format, and agreement with the dense range."""

from __future__ import annotations

import base64
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from geoloc_ros.geometry.pose import Pose3D
from geoloc_ros.gis.depth.streetview import encode_depth_map, load_depth_file
from geoloc_ros.sim.gsvdepth import coarse_planes, gsv_ray_directions, panorama_xml
from geoloc_ros.sim.render import Conditions, render_panorama
from geoloc_ros.sim.town import Town


def depth_from_planes(indices: np.ndarray, planes: np.ndarray) -> np.ndarray:
    """Per-pixel range (float32, 0 = sky) in panorama column order, as a decoder computes it: the
    oracle the simulator's planes are checked against."""
    rays = gsv_ray_directions(indices.shape[1], indices.shape[0])
    n = planes[indices.astype(np.int64), :3].astype(np.float64)
    d = planes[indices.astype(np.int64), 3].astype(np.float64)
    denom = np.einsum("hwi,hwi->hw", rays, n)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = np.abs(d / denom)
    depth[(indices == 0) | ~np.isfinite(depth)] = 0.0
    return depth[:, ::-1].astype(np.float32)


def _raw(encoded: str) -> bytes:
    return zlib.decompress(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))


def test_encoding_reproduces_the_real_fixture_bytes(shared_dir: Path) -> None:
    text = (shared_dir / "fixtures/gsv/M0zT0mYKzPobhRw0G3AXQg.xml").read_text(encoding="utf-8")
    encoded = re.search(r"<depth_map>\s*(.*?)\s*</depth_map>", text, re.S).group(1)  # type: ignore[union-attr]
    raw = _raw(encoded)
    _, n_planes, width, height, offset = struct.unpack_from("<BHHHB", raw, 0)
    indices = np.frombuffer(raw, np.uint8, width * height, offset).reshape(height, width)
    planes = np.frombuffer(raw, "<f4", n_planes * 4, offset + width * height).reshape(n_planes, 4)
    ours = encode_depth_map(indices.copy(), planes.copy())
    assert "=" not in ours and "+" not in ours and "/" not in ours
    assert _raw(ours) == raw


def test_coarse_depth_agrees_with_the_dense_range(clear_town: Town) -> None:
    body = _on_street(clear_town, 2.5)
    indices, planes = coarse_planes(clear_town, body)
    assert indices.shape == (256, 512) and indices.dtype == np.uint8
    assert planes.shape[1] == 4 and np.all(planes[0] == 0)
    assert np.all(planes[1:, 3] > 0), "planes face the camera (d > 0)"
    coarse = depth_from_planes(indices, planes)
    # The dense render near the decoder's rays: a 1024-wide render's column 2u+1 is the decoder's
    # column u exactly; its row 2v+1 is a quarter of a coarse row below the decoder's row v.
    _, dense = render_panorama(clear_town, body, 1024, Conditions.flat())
    dense = dense[1::2, 1::2]
    both = (coarse > 0) & (dense > 0)
    assert both.mean() > 0.4
    rel = np.abs(coarse[both] - dense[both]) / dense[both]
    assert np.median(rel) < 0.005
    assert np.mean(rel < 0.03) > 0.95  # the rest: label boundaries and grazing ground near the horizon
    sky = dense[:128] == 0
    assert np.mean(coarse[:128][sky] == 0) > 0.97, "sky stays empty (but for roof-line pixels)"


def test_decoder_of_the_panorama_set_reads_our_files(clear_town: Town, tmp_path: Path) -> None:
    body = _on_street(clear_town, 2.5)
    indices, planes = coarse_planes(clear_town, body)
    xml = panorama_xml(
        "p0", 48.0, 2.0, 37.5, 33.0, 0.0, 0.0, 1024, encode_depth_map(indices, planes), [("p1", 10.0)]
    )
    path = tmp_path / "p0_depth_gsv.xml"
    path.write_text(xml, encoding="utf-8")
    decoded = load_depth_file(path)
    ours = depth_from_planes(indices, planes)
    both = (decoded > 0) & (ours > 0)
    assert both.mean() > 0.4
    assert np.median(np.abs(decoded[both] - ours[both]) / ours[both]) < 0.01
    assert np.mean((decoded > 0) == (ours > 0)) > 0.98


def _on_street(town: Town, height: float) -> Pose3D:
    st = town.network.streets[0]
    pos, tan = st.point_at(st.length * 0.5)
    return Pose3D.from_xyz_ypr([pos[0], pos[1], height], float(np.arctan2(tan[1], tan[0])) + 0.2)
