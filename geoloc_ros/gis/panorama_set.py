"""The panorama-set format: a directory with ``panoramas.jsonl`` (one panorama per line).

Fields (see docs/formats.md): ``id``, ``lat``, ``lon``, ``alt``?, ``heading_deg``, ``pitch_deg``?,
``roll_deg``?, ``camera_height_m``?, ``image``, ``depth``?, ``depth_gsv``?, ``links``?,
``captured_at``?, ``position_sigma_m``?, ``heading_sigma_deg``? (the metadata's own standard
deviations: per horizontal axis, and of the heading; absent = not stated, see
:data:`PROVIDER_UNCERTAINTY`). Depth values are ranges along each pixel's ray (metres; stored as millimetres
in a 16-bit PNG, 0 = unknown). An optional ``origin.json`` holds the preferred map origin.

Reading validates every line; errors name the file, the line number and the field.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TextIO

import cv2
import numpy as np
from pydantic import Field, field_validator

from geoloc_ros.config import StrictModel, validate_mapping
from geoloc_ros.errors import ConfigError
from geoloc_ros.geo.enu import GeoOrigin, geodetic_to_enu
from geoloc_ros.gis.depth import DEFAULT_DEPTH_FORMAT, STREETVIEW_DEPTH_FORMAT, load_depth
from geoloc_ros.gis.depth.png_mm import encode_depth_png
from geoloc_ros.gis.errors import PanoramaSetError  # re-exported: defined with the other GIS errors
from geoloc_ros.io.atomic import atomic_directory, atomic_write_bytes, atomic_write_json
from geoloc_ros.io.errors import ImageConversionError
from geoloc_ros.io.images import check_encoded_image_size
from geoloc_ros.limits import MAX_IMAGE_SIDE_PX, MAX_PANORAMA_PIXELS

logger = logging.getLogger(__name__)

INDEX_NAME = "panoramas.jsonl"
ORIGIN_NAME = "origin.json"


class PanoramaRecord(StrictModel):
    id: str = Field(min_length=1)
    lat: float = Field(ge=-90.0, le=90.0, allow_inf_nan=False)
    lon: float = Field(ge=-180.0, le=180.0, allow_inf_nan=False)
    alt: float | None = Field(default=None, allow_inf_nan=False)
    heading_deg: float = Field(allow_inf_nan=False)
    pitch_deg: float = Field(default=0.0, ge=-90.0, le=90.0, allow_inf_nan=False)
    roll_deg: float = Field(default=0.0, ge=-180.0, le=180.0, allow_inf_nan=False)
    camera_height_m: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    image: str = Field(min_length=1)
    depth: str | None = None
    # Format of ``depth`` (a name of geoloc_ros.gis.depth); None = png_mm, 16-bit PNG in millimetres.
    depth_format: str | None = Field(default=None, min_length=1)
    depth_gsv: str | None = None
    links: list[str] = Field(default_factory=list)
    captured_at: datetime | None = None
    position_sigma_m: float | None = Field(default=None, ge=0.0, le=1000.0, allow_inf_nan=False)
    heading_sigma_deg: float | None = Field(default=None, ge=0.0, le=180.0, allow_inf_nan=False)

    @field_validator("image", "depth", "depth_gsv")
    @classmethod
    def _relative_path(cls, value: str | None) -> str | None:
        if value is not None and (Path(value).is_absolute() or ".." in Path(value).parts):
            raise ValueError("must be a path relative to the panorama set directory")
        return value

    def to_json(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude_none=True, exclude_defaults=False)

    @property
    def has_depth(self) -> bool:
        """The panorama has depth (a range image or Street View planes): :meth:`PanoramaSet.load_depth`
        returns one."""
        return self.depth is not None or self.depth_gsv is not None

    @property
    def has_plane_depth(self) -> bool:
        """The depth the map uses is a plane model (Street View planes, ``depth_gsv`` or the
        ``streetview`` format), not a measured range: cars, poles and trees are left out of it."""
        if self.depth is not None:
            return self.depth_format == STREETVIEW_DEPTH_FORMAT
        return self.depth_gsv is not None


class PanoramaSet:
    """A validated panorama set on disk. Images and depth load lazily, one panorama at a time."""

    def __init__(self, root: Path, records: list[PanoramaRecord], origin: GeoOrigin | None) -> None:
        self.root = root
        self.records = records
        self._origin = origin
        self._by_id = {r.id: i for i, r in enumerate(records)}

    # ---------------------------------------------------------------- reading
    @classmethod
    def load(cls, root: str | Path, check_files: bool = True) -> PanoramaSet:
        root = Path(root)
        index = root / INDEX_NAME
        if not index.is_file():
            raise PanoramaSetError(f"{root}: not a panorama set (no {INDEX_NAME})")
        records: list[PanoramaRecord] = []
        seen: dict[str, int] = {}
        with index.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                source = f"{index}:{lineno}"
                try:
                    data = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise PanoramaSetError(f"{source}: invalid JSON: {exc.msg}") from None
                try:
                    record = validate_mapping(PanoramaRecord, data, source)
                except ConfigError as exc:
                    raise PanoramaSetError(str(exc)) from None
                if record.id in seen:
                    raise PanoramaSetError(
                        f"{source}: id: duplicate id {record.id!r} (first on line {seen[record.id]})"
                    )
                seen[record.id] = lineno
                if check_files:
                    for field in ("image", "depth", "depth_gsv"):
                        rel = getattr(record, field)
                        if rel is not None and not (root / rel).is_file():
                            raise PanoramaSetError(f"{source}: {field}: file {rel!r} not found in {root}")
                records.append(record)
        if not records:
            raise PanoramaSetError(f"{index}: the panorama set is empty")
        unknown_links = sum(1 for r in records for link in r.links if link not in seen)
        if unknown_links:
            logger.info("%s: %d links point to panoramas outside the set (ignored)", index, unknown_links)
        origin = None
        origin_path = root / ORIGIN_NAME
        if origin_path.is_file():
            try:
                origin = GeoOrigin.from_dict(json.loads(origin_path.read_text(encoding="utf-8")))
            except (KeyError, ValueError, TypeError) as exc:
                raise PanoramaSetError(f"{origin_path}: invalid map origin: {exc}") from None
        return cls(root, records, origin)

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[PanoramaRecord]:
        return iter(self.records)

    def __getitem__(self, pano_id: str) -> PanoramaRecord:
        try:
            return self.records[self._by_id[pano_id]]
        except KeyError:
            raise PanoramaSetError(f"{self.root}: no panorama with id {pano_id!r}") from None

    def index_of(self, pano_id: str) -> int:
        return self._by_id[pano_id]

    @property
    def origin(self) -> GeoOrigin:
        """The map origin: ``origin.json`` if present, else the first panorama at altitude 0."""
        if self._origin is not None:
            return self._origin
        first = self.records[0]
        return GeoOrigin(first.lat, first.lon, first.alt or 0.0)

    def positions_enu(self, origin: GeoOrigin | None = None) -> np.ndarray:
        """``(N, 3)`` ENU positions of the panoramas (camera centres) in the map frame."""
        o = origin or self.origin
        lat = np.array([r.lat for r in self.records])
        lon = np.array([r.lon for r in self.records])
        alt = np.array([r.alt if r.alt is not None else o.alt_m for r in self.records])
        return geodetic_to_enu(lat, lon, alt, o)

    def load_image(self, record: PanoramaRecord) -> np.ndarray:
        """The panorama as a BGR uint8 array; checks the 2:1 aspect ratio."""
        path = self.root / record.image
        _check_image_header(path, f"image of panorama {record.id!r}")
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise PanoramaSetError(f"{path}: cannot decode image of panorama {record.id!r}")
        h, w = image.shape[:2]
        if w != 2 * h:
            raise PanoramaSetError(f"{path}: equirectangular image must be 2:1, got {w}x{h}")
        return image

    def load_depth(self, record: PanoramaRecord, width: int | None = None) -> np.ndarray | None:
        """Range image in metres (float32, 0 = unknown) or None when the panorama has no depth.

        Prefers ``depth`` (in ``depth_format``, :mod:`geoloc_ros.gis.depth`); falls back to the
        Street View ``depth_gsv`` planes. ``width`` asks plane formats for that grid width (raster
        formats return their own size).
        """
        what = f"panorama {record.id!r}"
        if record.depth is not None:
            fmt = record.depth_format or DEFAULT_DEPTH_FORMAT
            _check_image_header(self.root / record.depth, f"depth PNG of {what}")
            return load_depth(self.root / record.depth, fmt, what, width)
        if record.depth_gsv is not None:
            return load_depth(self.root / record.depth_gsv, STREETVIEW_DEPTH_FORMAT, what, width)
        return None


def _check_image_header(path: Path, what: str) -> None:
    """Refuse, from its header alone, a PNG / JPEG bigger than :data:`MAX_PANORAMA_PIXELS` (other
    formats are left to OpenCV's own limit)."""
    try:
        with path.open("rb") as fh:
            head = fh.read(1 << 20)
    except OSError as exc:
        raise PanoramaSetError(f"{path}: cannot read {what}: {exc}") from None
    if not head.startswith((b"\x89PNG", b"\xff\xd8")):
        return
    try:
        check_encoded_image_size(head, max_side=4 * MAX_IMAGE_SIDE_PX, max_pixels=MAX_PANORAMA_PIXELS)
    except ImageConversionError as exc:
        raise PanoramaSetError(f"{path}: {what}: {exc}") from None


@dataclass(frozen=True)
class PoseUncertainty:
    """Standard deviations of a panorama's stated pose: position per horizontal axis, heading."""

    position_sigma_m: float
    heading_sigma_deg: float


# Documented defaults per provider (docs/formats.md), for `geoloc map build --pose-uncertainty`:
# exact (surveyed or simulated metadata), Street-View-like imagery (about a metre and a degree or two
# in open streets, more in urban canyons), and an RTK-surveyed mobile-mapping capture.
PROVIDER_UNCERTAINTY: dict[str, PoseUncertainty] = {
    "exact": PoseUncertainty(0.0, 0.0),
    "streetview": PoseUncertainty(1.0, 1.5),
    "survey": PoseUncertainty(0.05, 0.1),
}


def pose_uncertainty(record: PanoramaRecord, default: PoseUncertainty | None = None) -> PoseUncertainty:
    """The record's stated uncertainty, each missing field from ``default`` (exact when None)."""
    base = default or PROVIDER_UNCERTAINTY["exact"]
    return PoseUncertainty(
        base.position_sigma_m if record.position_sigma_m is None else record.position_sigma_m,
        base.heading_sigma_deg if record.heading_sigma_deg is None else record.heading_sigma_deg,
    )


class PanoramaSetWriter:
    """Writes a panorama set atomically: the directory appears only when :meth:`close` succeeds.

    Use as a context manager; records stream to disk one at a time (city-scale sets never sit in
    memory).
    """

    def __init__(
        self,
        root: str | Path,
        origin: GeoOrigin | None = None,
        overwrite: bool = False,
        image_ext: str = ".jpg",
        jpeg_quality: int = 92,
    ) -> None:
        self._target = Path(root)
        self._cm = atomic_directory(self._target, overwrite=overwrite)
        self._origin = origin
        self._image_ext = image_ext
        self._jpeg_quality = jpeg_quality
        self._tmp: Path | None = None
        self._index: TextIO | None = None
        self.count = 0

    def __enter__(self) -> PanoramaSetWriter:
        self._tmp = self._cm.__enter__()
        (self._tmp / "images").mkdir()
        self._index = (self._tmp / INDEX_NAME).open("w", encoding="utf-8")
        if self._origin is not None:
            atomic_write_json(self._tmp / ORIGIN_NAME, self._origin.to_dict())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._index is not None
        self._index.close()
        self._cm.__exit__(exc_type, exc, tb)

    @property
    def staging_dir(self) -> Path:
        """Where files go until the set is complete (for extra files such as ``depth_gsv``)."""
        if self._tmp is None:
            raise RuntimeError("PanoramaSetWriter used outside its context")
        return self._tmp

    def add(
        self,
        record: PanoramaRecord,
        image: np.ndarray,
        depth_m: np.ndarray | None = None,
        extra_files: dict[str, bytes] | None = None,
    ) -> PanoramaRecord:
        """Write one panorama (BGR image, optional range image) and append its line.

        ``image``/``depth`` paths of ``record`` are filled in; ``extra_files`` maps relative paths
        (e.g. the ``depth_gsv`` file) to their bytes.
        """
        tmp = self.staging_dir
        h, w = image.shape[:2]
        if w != 2 * h:
            raise PanoramaSetError(f"panorama {record.id!r}: image must be 2:1, got {w}x{h}")
        params = [cv2.IMWRITE_JPEG_QUALITY, self._jpeg_quality] if self._image_ext == ".jpg" else []
        ok, buf = cv2.imencode(self._image_ext, image, params)
        if not ok:
            raise PanoramaSetError(f"panorama {record.id!r}: failed to encode image")
        image_rel = f"images/{record.id}{self._image_ext}"
        atomic_write_bytes(tmp / image_rel, buf.tobytes())
        update: dict[str, object] = {"image": image_rel}
        if depth_m is not None:
            depth_rel = f"images/{record.id}_depth.png"
            atomic_write_bytes(tmp / depth_rel, encode_depth_png(depth_m))
            update["depth"] = depth_rel
        for rel, data in (extra_files or {}).items():
            atomic_write_bytes(tmp / rel, data)
        final = record.model_copy(update=update)
        assert self._index is not None
        self._index.write(json.dumps(final.to_json()) + "\n")
        self.count += 1
        return final


# Beside a simulated panorama set whose metadata carries an error, never inside it: the true pose of
# every panorama, for evaluation only (the map build and the localizer never read it).
PANORAMAS_TRUTH = "panoramas_truth.jsonl"


def read_panorama_truth(path: str | Path) -> dict[str, dict[str, float]]:
    """``id -> {lat, lon, alt, heading_deg, x, y, z}`` of a ``panoramas_truth.jsonl`` (or its directory)."""
    path = Path(path)
    if path.is_dir():
        path = path / PANORAMAS_TRUTH
    if not path.is_file():
        raise PanoramaSetError(f"{path}: panorama truth file not found")
    out: dict[str, dict[str, float]] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            out[str(d["id"])] = {k: float(d[k]) for k in ("lat", "lon", "alt", "heading_deg", "x", "y", "z")}
        except (ValueError, KeyError, TypeError) as exc:
            raise PanoramaSetError(f"{path}:{lineno}: invalid panorama truth line: {exc}") from None
    return out
