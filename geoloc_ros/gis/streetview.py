"""Google Street View panorama metadata (XML / JSON) and the importer of Street View downloads.

The ``depth_map`` plane format those documents carry is the ``streetview`` depth format,
:mod:`geoloc_ros.gis.depth.streetview` (decoder and encoder).
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import Field

from geoloc_ros.config import StrictModel, validate_mapping
from geoloc_ros.errors import ConfigError
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.gis.depth.streetview import (
    StreetViewDepthMap,
    decode_depth_map,
    parse_json,
    parse_xml,
    read_bounded_text,
    remove_whitespace,
)
from geoloc_ros.gis.errors import StreetViewError
from geoloc_ros.gis.panorama_set import PanoramaRecord, PanoramaSetWriter

logger = logging.getLogger(__name__)


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
            "depth_map": remove_whitespace(depth_node.text or "") if depth_node is not None else None,
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
            "depth_map": remove_whitespace(depth) if isinstance(depth, str) else None,
        }
    )


def parse_metadata(text: str, source: str = "metadata") -> StreetViewMetadata:
    """Parse a Street View metadata document (XML ``<panorama>`` or the JSON form)."""
    stripped = text.strip()
    if stripped.startswith("<"):
        fields = _metadata_from_xml(parse_xml(stripped, source), source)
    elif stripped.startswith("{"):
        fields = _metadata_from_json(parse_json(stripped, source), source)
    else:
        raise StreetViewError(f"{source}: not a Street View metadata document (neither XML nor JSON)")
    try:
        return validate_mapping(StreetViewMetadata, fields, source)
    except ConfigError as exc:
        raise StreetViewError(str(exc)) from None


def load_metadata(path: str | Path) -> StreetViewMetadata:
    p = Path(path)
    return parse_metadata(read_bounded_text(p, "Street View metadata file"), str(p))


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
