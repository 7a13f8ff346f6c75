"""The ``streetview`` depth format: Google Street View's ``depth_map`` plane model, decoder and encoder.

**depth_map.** URL-safe base64 (the ``=`` padding removed) of zlib data: an 8-byte header
(``u8`` header size, ``u16`` number of planes, ``u16`` width, ``u16`` height, ``u8`` offset of
the indices; little endian), then ``width x height`` ``u8`` plane indices (row-major, top row
first), then per plane four little-endian ``float32`` ``(nx, ny, nz, d)``. Plane 0 means sky or
no data.

**Axes.** The planes live in Street View's camera frame ``x`` = right of the panorama's centre
column, ``y`` = behind it, ``z`` = down, and satisfy ``n·p + d = 0`` with ``d > 0`` (``n`` points
from the plane towards the camera). The index columns run mirrored with respect to the image
(index column ``x`` looks where image column ``W-1-x`` looks). Checked on the real fixture
``M0zT0mYKzPobhRw0G3AXQg.xml``: under this convention every one of the 67,519 labelled pixels
sees the front face of its plane (``n·ray < 0``); the bottom rows belong to a plane with an up
normal 2.73 m below the camera; the mirror is the one of the decoder the community validated by
overlaying depth on imagery (proog128's GSVPanoDepth.js), and a mirrored reading would be
geometrically self-consistent too, so the fixture alone cannot settle it.

:class:`StreetViewDepthMap` converts everything once to the panorama-set conventions used by
the rest of the code (:mod:`geoloc_ros.gis.equirect`): body frame ``x`` forward (the centre
column), ``y`` left, ``z`` up, and column ``u`` at azimuth ``(u/W - 0.5)·360°`` clockwise from the
centre column. Planes stay ``n·p + d = 0`` (the ground plane's normal points up).

The range map is the distance **along each pixel's ray** (metres, float32, 0 = unknown), the
panorama-set depth convention. :func:`encode_depth_map` writes the format (the simulator's coarse
plane depth, :mod:`geoloc_ros.sim.gsvdepth`); the panorama metadata documents that carry it are
:mod:`geoloc_ros.gis.streetview`.

**Limits** (:mod:`geoloc_ros.limits`): a depth or metadata file, and a ``depth_map`` string, of more
than :data:`~geoloc_ros.limits.MAX_DEPTH_TEXT_BYTES` is refused unread, and zlib output is cut at
:data:`~geoloc_ros.limits.MAX_DEPTH_DECODED_BYTES` (a real depth map decodes to 0.1-0.5 MB), so a
decompression bomb is refused with a clear error instead of filling the memory.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import struct
import xml.etree.ElementTree as ET
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoloc_ros.gis.errors import StreetViewError
from geoloc_ros.limits import MAX_DEPTH_DECODED_BYTES, MAX_DEPTH_TEXT_BYTES

logger = logging.getLogger(__name__)

HEADER_SIZE = 8
# Street View camera axes (right, back, down) from the panorama body axes (forward, left, up).
# The matrix is symmetric and its own inverse: it also maps Street View vectors to body vectors.
GSV_FROM_BODY = np.array([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
_BASE64_URLSAFE = re.compile(r"^[A-Za-z0-9_\-]+=*$")
# A ray nearly parallel to its plane gives no usable range (it would be metres to kilometres).
_MIN_RAY_PLANE_COSINE = 1e-6
# Ground planes: normal within ~15 degrees of vertical (cos 15° = 0.966), below the camera.
_GROUND_NORMAL_MIN_Z = 0.966
_RANGE_ROWS_PER_BLOCK = 256


# ---------------------------------------------------------------------------- depth map
@dataclass(frozen=True, eq=False)
class StreetViewDepthMap:
    """A decoded Street View depth map in the panorama-set conventions (see the module docstring).

    ``plane_indices[v, u]`` labels the pixel at image column ``u`` (column ``W/2`` = heading);
    plane ``i`` is ``normals[i]·p + distances[i] = 0`` in the body frame (x forward, y left, z up),
    ``distances[i]`` the plane's distance from the camera in metres; plane 0 is sky / no data.
    """

    plane_indices: np.ndarray  # (H, W) uint8
    normals: np.ndarray  # (P, 3) float64, unit, towards the camera side
    distances: np.ndarray  # (P,) float64 metres

    @property
    def width(self) -> int:
        return int(self.plane_indices.shape[1])

    @property
    def height(self) -> int:
        return int(self.plane_indices.shape[0])

    @property
    def num_planes(self) -> int:
        return int(self.normals.shape[0])

    def plane_pixel_counts(self) -> np.ndarray:
        """``(P,)`` number of pixels labelled with each plane."""
        return np.bincount(self.plane_indices.ravel(), minlength=self.num_planes)

    def ground_plane(self) -> int | None:
        """Index of the ground plane: the most-used plane with an up normal, below the camera."""
        counts = self.plane_pixel_counts()
        candidates = [
            i
            for i in range(1, self.num_planes)
            if self.normals[i, 2] >= _GROUND_NORMAL_MIN_Z and self.distances[i] > 0 and counts[i] > 0
        ]
        if not candidates:
            return None
        return max(candidates, key=lambda i: counts[i])

    def camera_height_m(self) -> float | None:
        """Height of the camera above the ground plane (metres), or None without a ground plane."""
        ground = self.ground_plane()
        return None if ground is None else float(self.distances[ground] / self.normals[ground, 2])

    def range_map(self, width: int | None = None, height: int | None = None) -> np.ndarray:
        """Range along each pixel's ray (float32 metres, 0 = sky / unknown) on a ``width x height`` grid.

        The default is the native grid (512x256). At other sizes every output pixel takes the
        plane label of the native cell it falls in and intersects its *own* ray with that plane,
        so surfaces stay exact planes (no blockiness inside a plane) and labels never blend.
        """
        w = self.width if width is None else int(width)
        h = self.height if height is None else int(height)
        if w <= 0 or h <= 0 or w != 2 * h:
            raise StreetViewError(f"range map size must be 2:1 and positive, got {w}x{h}")
        u = np.arange(w, dtype=np.float64)
        azimuth = (u / w - 0.5) * 2.0 * np.pi
        cos_a, sin_a = np.cos(azimuth), np.sin(azimuth)
        # Native label cells span [c/w, (c+1)/w) of the turn (the community decoders' sampling).
        label_cols = np.minimum(np.floor(u * self.width / w).astype(np.intp), self.width - 1)
        out = np.zeros((h, w), dtype=np.float32)
        for top in range(0, h, _RANGE_ROWS_PER_BLOCK):
            rows = np.arange(top, min(h, top + _RANGE_ROWS_PER_BLOCK), dtype=np.float64)
            elevation = np.pi / 2.0 - (rows + 0.5) / h * np.pi
            cos_e, sin_e = np.cos(elevation)[:, None], np.sin(elevation)[:, None]
            label_rows = np.minimum(np.floor((rows + 0.5) * self.height / h).astype(np.intp), self.height - 1)
            labels = self.plane_indices[label_rows[:, None], label_cols[None, :]]
            n = self.normals[labels]
            # Ray (cos e cos a, -cos e sin a, sin e): see equirect.pixel_to_direction.
            cosine = cos_e * (n[..., 0] * cos_a - n[..., 1] * sin_a) + sin_e * n[..., 2]
            hit = (labels > 0) & (cosine < -_MIN_RAY_PLANE_COSINE)
            block = np.zeros(labels.shape, dtype=np.float64)
            block[hit] = -self.distances[labels[hit]] / cosine[hit]
            out[top : top + len(rows)] = block
        return out


def remove_whitespace(encoded: str) -> str:
    return "".join(encoded.split())


def decode_depth_map(encoded: str, source: str = "depth_map") -> StreetViewDepthMap:
    """Decode a Street View ``depth_map`` string; errors name ``source`` and what is wrong."""
    if len(encoded) > MAX_DEPTH_TEXT_BYTES:
        raise StreetViewError(
            f"{source}: depth_map string of {len(encoded)} characters exceeds the limit of "
            f"{MAX_DEPTH_TEXT_BYTES}"
        )
    text = remove_whitespace(encoded)
    if not text:
        raise StreetViewError(f"{source}: depth_map is empty")
    if not _BASE64_URLSAFE.match(text):
        bad = next(c for c in text if not (c.isalnum() or c in "-_="))
        raise StreetViewError(f"{source}: depth_map is not URL-safe base64 (character {bad!r})")
    try:
        compressed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise StreetViewError(f"{source}: depth_map is not valid base64: {exc}") from None
    try:
        inflater = zlib.decompressobj()
        raw = inflater.decompress(compressed, MAX_DEPTH_DECODED_BYTES)
    except zlib.error as exc:
        raise StreetViewError(f"{source}: depth_map is not zlib data: {exc}") from None
    if inflater.unconsumed_tail:
        raise StreetViewError(
            f"{source}: depth_map expands beyond the limit of {MAX_DEPTH_DECODED_BYTES} bytes "
            f"({len(compressed)} compressed bytes): refused as a decompression bomb"
        )
    if len(raw) < HEADER_SIZE:
        raise StreetViewError(
            f"{source}: depth_map is {len(raw)} bytes, shorter than its {HEADER_SIZE}-byte header"
        )
    header_size = raw[0]
    num_planes, width, height = struct.unpack_from("<HHH", raw, 1)
    offset = raw[7]
    if header_size < HEADER_SIZE or offset < HEADER_SIZE:
        raise StreetViewError(
            f"{source}: depth_map header size {header_size} / offset {offset} is below {HEADER_SIZE}"
        )
    if width == 0 or height == 0 or width != 2 * height:
        raise StreetViewError(f"{source}: depth_map grid must be 2:1, got {width}x{height}")
    if num_planes == 0:
        raise StreetViewError(f"{source}: depth_map has no planes")
    expected = offset + width * height + 16 * num_planes
    if len(raw) < expected:
        raise StreetViewError(
            f"{source}: depth_map is truncated: {len(raw)} bytes, the header announces {expected} "
            f"({num_planes} planes, {width}x{height})"
        )
    if len(raw) > expected:
        logger.debug("%s: %d trailing bytes after the depth_map planes ignored", source, len(raw) - expected)
    indices = np.frombuffer(raw, dtype=np.uint8, count=width * height, offset=offset).reshape(height, width)
    planes = np.frombuffer(raw, dtype="<f4", count=4 * num_planes, offset=offset + width * height)
    planes = planes.reshape(num_planes, 4).astype(np.float64)
    top_label = int(indices.max())
    if top_label >= num_planes:
        raise StreetViewError(
            f"{source}: depth_map pixel refers to plane {top_label}, only {num_planes} planes"
        )
    used = np.unique(indices)
    used = used[used > 0]
    if not np.all(np.isfinite(planes[used])):
        raise StreetViewError(f"{source}: depth_map has non-finite plane parameters")
    normals = planes[:, :3] @ GSV_FROM_BODY.T
    norms = np.linalg.norm(normals, axis=1)
    if np.any(np.abs(norms[used] - 1.0) > 1e-2):
        worst = int(used[np.argmax(np.abs(norms[used] - 1.0))])
        raise StreetViewError(
            f"{source}: depth_map plane {worst} normal has length {norms[worst]:.4f}, not 1"
        )
    normals[used] /= norms[used, None]
    # Mirror the columns: index column x looks where image column W-1-x looks.
    return StreetViewDepthMap(np.ascontiguousarray(indices[:, ::-1]), normals, planes[:, 3].copy())


def encoded_depth_from_text(text: str, source: str = "depth") -> str:
    """The ``depth_map`` string held by ``text``: a bare string, a metadata XML or a metadata JSON."""
    stripped = text.strip()
    if stripped.startswith("<"):
        root = parse_xml(stripped, source)
        node = root.find(".//depth_map")
        if node is None or not (node.text or "").strip():
            raise StreetViewError(f"{source}: no <depth_map> element in the XML")
        return remove_whitespace(node.text or "")
    if stripped.startswith("{"):
        data = parse_json(stripped, source)
        model = data.get("model")
        encoded = model.get("depth_map") if isinstance(model, dict) else None
        if not isinstance(encoded, str) or not encoded.strip():
            raise StreetViewError(f"{source}: no model.depth_map string in the JSON")
        return remove_whitespace(encoded)
    return remove_whitespace(stripped)


def read_bounded_text(p: Path, what: str) -> str:
    """The text of the Street View file ``p`` (``what`` names it in errors), refused unread beyond
    :data:`MAX_DEPTH_TEXT_BYTES`; a missing or unreadable file is a :class:`StreetViewError`."""
    try:
        size = p.stat().st_size
        if size > MAX_DEPTH_TEXT_BYTES:
            raise StreetViewError(f"{p}: {what} of {size} bytes exceeds the limit of {MAX_DEPTH_TEXT_BYTES}")
        return p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StreetViewError(f"{p}: {what} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StreetViewError(f"{p}: cannot read {what}: {exc}") from None


def load_depth_map_file(path: str | Path) -> StreetViewDepthMap:
    """Decode the depth map held by a file (bare ``depth_map`` string, metadata XML or JSON)."""
    p = Path(path)
    text = read_bounded_text(p, "Street View depth file")
    return decode_depth_map(encoded_depth_from_text(text, str(p)), str(p))


def load_depth(path: Path, what: str, width: int | None = None) -> np.ndarray:
    """The depth-format loader (:mod:`geoloc_ros.gis.depth`): the range map on a ``width`` x
    ``width/2`` grid (default the native 512x256); errors name the file (``what`` is not needed)."""
    return load_depth_file(path, width, None if width is None else width // 2)


def load_depth_file(path: str | Path, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Range map (float32 metres along each ray, 0 = unknown) of a Street View depth file.

    ``width``/``height`` default to the native 512x256 grid; see :meth:`StreetViewDepthMap.range_map`.
    """
    return load_depth_map_file(path).range_map(width, height)


def encode_depth_map(indices: np.ndarray, planes: np.ndarray) -> str:
    """The ``depth_map`` string (URL-safe base64, no padding, of zlib data) of an index grid + planes."""
    h, w = indices.shape
    if indices.dtype != np.uint8:
        raise StreetViewError(f"plane indices must be uint8, got {indices.dtype}")
    if planes.ndim != 2 or planes.shape[1] != 4 or len(planes) > 256:
        raise StreetViewError(f"planes must be (n <= 256, 4), got {planes.shape}")
    if int(indices.max(initial=0)) >= len(planes):
        raise StreetViewError(f"plane index {int(indices.max())} out of range for {len(planes)} planes")
    header = struct.pack("<BHHHB", HEADER_SIZE, len(planes), w, h, HEADER_SIZE)
    raw = header + np.ascontiguousarray(indices).tobytes() + planes.astype("<f4").tobytes()
    return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode("ascii").rstrip("=")


def parse_xml(text: str, source: str) -> ET.Element:
    """A Street View XML document (depth or metadata); errors name ``source``."""
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise StreetViewError(f"{source}: invalid XML: {exc}") from None


def parse_json(text: str, source: str) -> dict[str, Any]:
    """A Street View JSON document (an object at the top level); errors name ``source``."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StreetViewError(f"{source}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise StreetViewError(f"{source}: expected a JSON object at the top level")
    return data
