"""Google Street View data: the ``depth_map`` plane format and the panorama metadata (XML / JSON).

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
panorama-set depth convention.

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
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import Field

from geoloc_ros.config import StrictModel, validate_mapping
from geoloc_ros.errors import ConfigError
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.gis.errors import StreetViewError
from geoloc_ros.gis.panorama_set import PanoramaRecord, PanoramaSetWriter
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


def _unpad_whitespace(encoded: str) -> str:
    return "".join(encoded.split())


def decode_depth_map(encoded: str, source: str = "depth_map") -> StreetViewDepthMap:
    """Decode a Street View ``depth_map`` string; errors name ``source`` and what is wrong."""
    if len(encoded) > MAX_DEPTH_TEXT_BYTES:
        raise StreetViewError(
            f"{source}: depth_map string of {len(encoded)} characters exceeds the limit of "
            f"{MAX_DEPTH_TEXT_BYTES}"
        )
    text = _unpad_whitespace(encoded)
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
        root = _parse_xml(stripped, source)
        node = root.find(".//depth_map")
        if node is None or not (node.text or "").strip():
            raise StreetViewError(f"{source}: no <depth_map> element in the XML")
        return _unpad_whitespace(node.text or "")
    if stripped.startswith("{"):
        data = _parse_json(stripped, source)
        model = data.get("model")
        encoded = model.get("depth_map") if isinstance(model, dict) else None
        if not isinstance(encoded, str) or not encoded.strip():
            raise StreetViewError(f"{source}: no model.depth_map string in the JSON")
        return _unpad_whitespace(encoded)
    return _unpad_whitespace(stripped)


def _read_bounded_text(p: Path, what: str) -> str:
    """The text of ``p``, refused unread beyond :data:`MAX_DEPTH_TEXT_BYTES`."""
    size = p.stat().st_size
    if size > MAX_DEPTH_TEXT_BYTES:
        raise StreetViewError(f"{p}: {what} of {size} bytes exceeds the limit of {MAX_DEPTH_TEXT_BYTES}")
    return p.read_text(encoding="utf-8")


def load_depth_map_file(path: str | Path) -> StreetViewDepthMap:
    """Decode the depth map held by a file (bare ``depth_map`` string, metadata XML or JSON)."""
    p = Path(path)
    try:
        text = _read_bounded_text(p, "Street View depth file")
    except FileNotFoundError:
        raise StreetViewError(f"{p}: Street View depth file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StreetViewError(f"{p}: cannot read Street View depth file: {exc}") from None
    return decode_depth_map(encoded_depth_from_text(text, str(p)), str(p))


def load_depth_file(path: str | Path, width: int | None = None, height: int | None = None) -> np.ndarray:
    """Range map (float32 metres along each ray, 0 = unknown) of a Street View depth file.

    ``width``/``height`` default to the native 512x256 grid; see :meth:`StreetViewDepthMap.range_map`.
    """
    return load_depth_map_file(path).range_map(width, height)


# ---------------------------------------------------------------------------- metadata
class StreetViewLink(StrictModel):
    """A link to an adjacent panorama; ``yaw_deg`` is the compass bearing of the road towards it."""

    pano_id: str = Field(min_length=1)
    yaw_deg: float | None = Field(default=None, allow_inf_nan=False)
    text: str | None = None


class StreetViewMetadata(StrictModel):
    """The metadata of one Street View panorama, as published in its XML or JSON document."""

    pano_id: str = Field(min_length=1)
    lat: float = Field(ge=-90.0, le=90.0, allow_inf_nan=False)
    lng: float = Field(ge=-180.0, le=180.0, allow_inf_nan=False)
    elevation_wgs84_m: float | None = Field(default=None, allow_inf_nan=False)
    elevation_egm96_m: float | None = Field(default=None, allow_inf_nan=False)
    pano_yaw_deg: float = Field(allow_inf_nan=False)
    tilt_yaw_deg: float = Field(default=0.0, allow_inf_nan=False)
    tilt_pitch_deg: float = Field(default=0.0, ge=-90.0, le=90.0, allow_inf_nan=False)
    image_width: int | None = Field(default=None, gt=0)
    image_height: int | None = Field(default=None, gt=0)
    image_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}(-\d{2})?$")
    description: str | None = None
    region: str | None = None
    country: str | None = None
    copyright: str | None = None
    links: list[StreetViewLink] = Field(default_factory=list)
    depth_map: str | None = Field(default=None, repr=False)

    def captured_at(self) -> datetime | None:
        """The capture date (Street View gives year and month: the first of the month, 00:00 UTC)."""
        if self.image_date is None:
            return None
        parts = [int(p) for p in self.image_date.split("-")]
        day = parts[2] if len(parts) == 3 else 1
        return datetime(parts[0], parts[1], day, tzinfo=timezone.utc)

    def decode_depth(self) -> StreetViewDepthMap | None:
        return (
            None if self.depth_map is None else decode_depth_map(self.depth_map, f"panorama {self.pano_id}")
        )

    def tilt_pitch_roll_deg(self) -> tuple[float, float]:
        """REP-103 pitch and roll (deg) of the capture rig, relative to its heading ``pano_yaw_deg``.

        Assumes the rig's up axis leans by ``tilt_pitch_deg`` towards compass ``tilt_yaw_deg``
        (the forward side of that bearing goes down). Exact decomposition with
        ``R = R_y(pitch) R_x(roll)``. The sign is *not* verified against data: on the fixture the
        depth planes' ground normal leans 1.8° along the heading axis and 0.05° sideways, whereas
        the tilt (2.33° at 110° from the heading) would lean 2.2° sideways; so the published
        depth (and, we believe, imagery) is already levelled and :meth:`to_record` ignores the
        tilt by default.
        """
        tilt = np.deg2rad(self.tilt_pitch_deg)
        relative = np.deg2rad(self.tilt_yaw_deg - self.pano_yaw_deg)
        pitch = np.arctan2(np.sin(tilt) * np.cos(relative), np.cos(tilt))
        roll = np.arcsin(np.clip(np.sin(tilt) * np.sin(relative), -1.0, 1.0))
        return float(np.rad2deg(pitch)), float(np.rad2deg(roll))

    def to_record(
        self,
        image: str,
        depth_gsv: str | None = None,
        camera_height_m: float | None = None,
        apply_tilt: bool = False,
    ) -> PanoramaRecord:
        """The panorama-set record of this panorama (``image``/``depth_gsv`` relative paths).

        ``alt`` is ``elevation_wgs84_m`` as published (WGS84 ellipsoid height); ``heading_deg`` is
        ``pano_yaw_deg`` (the compass bearing of the image's centre column); pitch and roll come
        from the tilt only with ``apply_tilt`` (see :meth:`tilt_pitch_roll_deg`).
        """
        pitch, roll = self.tilt_pitch_roll_deg() if apply_tilt else (0.0, 0.0)
        try:
            return PanoramaRecord(
                id=self.pano_id,
                lat=self.lat,
                lon=self.lng,
                alt=self.elevation_wgs84_m,
                heading_deg=float(np.mod(self.pano_yaw_deg, 360.0)),
                pitch_deg=pitch,
                roll_deg=roll,
                camera_height_m=camera_height_m,
                image=image,
                depth_gsv=depth_gsv,
                links=[link.pano_id for link in self.links],
                captured_at=self.captured_at(),
            )
        except ValueError as exc:
            raise StreetViewError(f"panorama {self.pano_id}: cannot build its record: {exc}") from None


def _parse_xml(text: str, source: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as exc:
        raise StreetViewError(f"{source}: invalid XML: {exc}") from None


def _parse_json(text: str, source: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise StreetViewError(f"{source}: invalid JSON at line {exc.lineno}: {exc.msg}") from None
    if not isinstance(data, dict):
        raise StreetViewError(f"{source}: expected a JSON object at the top level")
    return data


def _drop_none(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if v is not None}


def _metadata_from_xml(root: ET.Element, source: str) -> dict[str, Any]:
    if root.tag != "panorama":
        raise StreetViewError(f"{source}: expected a <panorama> document, got <{root.tag}>")
    data_props = root.find("data_properties")
    projection = root.find("projection_properties")
    if data_props is None:
        raise StreetViewError(f"{source}: missing <data_properties>")
    if projection is None:
        raise StreetViewError(f"{source}: missing <projection_properties>")
    a, p = data_props.attrib, projection.attrib
    links = []
    for node in root.findall("annotation_properties/link"):
        text_node = node.find("link_text")
        links.append(
            _drop_none(
                {
                    "pano_id": node.get("pano_id"),
                    "yaw_deg": node.get("yaw_deg"),
                    "text": text_node.text if text_node is not None else None,
                }
            )
        )
    depth_node = root.find("model/depth_map")

    def child_text(tag: str) -> str | None:
        node = data_props.find(tag)
        return node.text if node is not None else None

    return _drop_none(
        {
            "pano_id": a.get("pano_id"),
            "lat": a.get("lat"),
            "lng": a.get("lng"),
            "elevation_wgs84_m": a.get("elevation_wgs84_m"),
            "elevation_egm96_m": a.get("elevation_egm96_m"),
            "pano_yaw_deg": p.get("pano_yaw_deg"),
            "tilt_yaw_deg": p.get("tilt_yaw_deg"),
            "tilt_pitch_deg": p.get("tilt_pitch_deg"),
            "image_width": a.get("image_width"),
            "image_height": a.get("image_height"),
            "image_date": a.get("image_date"),
            "description": child_text("text"),
            "region": child_text("region"),
            "country": child_text("country"),
            "copyright": child_text("copyright"),
            "links": links,
            "depth_map": _unpad_whitespace(depth_node.text or "") if depth_node is not None else None,
        }
    )


def _section(data: dict[str, Any], key: str, source: str) -> dict[str, Any]:
    section = data.get(key, {})
    if not isinstance(section, dict):
        raise StreetViewError(f"{source}: {key}: expected an object, got {type(section).__name__}")
    return section


def _metadata_from_json(data: dict[str, Any], source: str) -> dict[str, Any]:
    """The ``cbk?output=json`` layout: ``Data``, ``Projection``, ``Location``, ``Links``, ``model``."""
    d = _section(data, "Data", source)
    p = _section(data, "Projection", source)
    loc = _section(data, "Location", source)
    model = _section(data, "model", source)
    raw_links = data.get("Links", [])
    if not isinstance(raw_links, list):
        raise StreetViewError(f"{source}: Links: expected a list, got {type(raw_links).__name__}")
    links = []
    for i, link in enumerate(raw_links):
        if not isinstance(link, dict):
            raise StreetViewError(f"{source}: Links.{i}: expected an object")
        links.append(
            _drop_none(
                {
                    "pano_id": link.get("panoId"),
                    "yaw_deg": link.get("yawDeg"),
                    "text": link.get("description"),
                }
            )
        )
    depth = model.get("depth_map")
    return _drop_none(
        {
            "pano_id": loc.get("panoId"),
            "lat": loc.get("lat"),
            "lng": loc.get("lng"),
            "elevation_wgs84_m": loc.get("elevation_wgs84_m"),
            "elevation_egm96_m": loc.get("elevation_egm96_m"),
            "pano_yaw_deg": p.get("pano_yaw_deg"),
            "tilt_yaw_deg": p.get("tilt_yaw_deg"),
            "tilt_pitch_deg": p.get("tilt_pitch_deg"),
            "image_width": d.get("image_width"),
            "image_height": d.get("image_height"),
            "image_date": d.get("image_date"),
            "description": loc.get("description"),
            "region": loc.get("region"),
            "country": loc.get("country"),
            "copyright": d.get("copyright"),
            "links": links,
            "depth_map": _unpad_whitespace(depth) if isinstance(depth, str) else None,
        }
    )


def parse_metadata(text: str, source: str = "metadata") -> StreetViewMetadata:
    """Parse a Street View metadata document (XML ``<panorama>`` or the JSON form)."""
    stripped = text.strip()
    if stripped.startswith("<"):
        fields = _metadata_from_xml(_parse_xml(stripped, source), source)
    elif stripped.startswith("{"):
        fields = _metadata_from_json(_parse_json(stripped, source), source)
    else:
        raise StreetViewError(f"{source}: not a Street View metadata document (neither XML nor JSON)")
    try:
        return validate_mapping(StreetViewMetadata, fields, source)
    except ConfigError as exc:
        raise StreetViewError(str(exc)) from None


def load_metadata(path: str | Path) -> StreetViewMetadata:
    p = Path(path)
    try:
        text = _read_bounded_text(p, "Street View metadata file")
    except FileNotFoundError:
        raise StreetViewError(f"{p}: Street View metadata file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise StreetViewError(f"{p}: cannot read Street View metadata: {exc}") from None
    return parse_metadata(text, str(p))


# ---------------------------------------------------------------------------- import
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _find_panorama_image(folder: Path, pano_id: str) -> Path | None:
    for stem in (pano_id, f"pano_{pano_id}"):
        for suffix in _IMAGE_SUFFIXES:
            candidate = folder / f"{stem}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def import_streetview(
    source_dir: str | Path,
    out_dir: str | Path,
    origin: GeoOrigin | None = None,
    overwrite: bool = False,
    apply_tilt: bool = False,
) -> int:
    """Build a panorama set from a folder of Street View downloads; returns the number imported.

    Every ``*.xml`` / ``*.json`` metadata file in ``source_dir`` is one panorama; its image is
    ``<pano_id>.jpg|jpeg|png`` or ``pano_<pano_id>.…`` beside it (equirectangular, 2:1). The depth
    string, when present, is stored as ``depth/<pano_id>.txt`` (the record's ``depth_gsv``) and the
    camera height is taken from its ground plane. The output is written atomically.
    """
    src = Path(source_dir)
    if not src.is_dir():
        raise StreetViewError(f"{src}: not a directory")
    metadata_files = sorted(p for p in src.iterdir() if p.suffix.lower() in (".xml", ".json") and p.is_file())
    if not metadata_files:
        raise StreetViewError(f"{src}: no Street View metadata (*.xml, *.json) found")
    count = 0
    with PanoramaSetWriter(out_dir, origin=origin, overwrite=overwrite) as writer:
        for meta_path in metadata_files:
            meta = load_metadata(meta_path)
            image_path = _find_panorama_image(src, meta.pano_id)
            if image_path is None:
                raise StreetViewError(
                    f"{meta_path}: no image {meta.pano_id}.jpg (or pano_{meta.pano_id}.jpg) beside it"
                )
            image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            if image is None:
                raise StreetViewError(f"{image_path}: cannot decode the panorama image")
            extra: dict[str, bytes] = {}
            depth_rel = None
            height_m = None
            if meta.depth_map is not None:
                depth = decode_depth_map(meta.depth_map, str(meta_path))
                height_m = depth.camera_height_m()
                depth_rel = f"depth/{meta.pano_id}.txt"
                extra[depth_rel] = meta.depth_map.encode("ascii")
            record = meta.to_record(
                image="pending", depth_gsv=depth_rel, camera_height_m=height_m, apply_tilt=apply_tilt
            )
            writer.add(record, image, extra_files=extra)
            count += 1
            logger.debug("imported Street View panorama %s from %s", meta.pano_id, meta_path)
    logger.info("imported %d Street View panoramas from %s into %s", count, src, out_dir)
    return count
