"""Compact storage of a map bundle (``geoloc map compact``): the same map in fewer bytes per view.

A bundle as built stores every descriptor raw (128 bytes, over half of the bytes), three float32
keypoint attributes and a full-size JPEG of every view. :func:`compact_bundle` writes a new bundle
(format version 2) with:

* descriptors product-quantised (:class:`~geoloc_ros.bovw.descriptor_codec.ProductQuantizer`,
  ``pq_bytes`` bytes each, codebook trained on a seeded sample of the bundle's own descriptors);
  readers decode them on the fly, so matching and refinement are unchanged;
* ``size``, ``angle``, ``response`` as float16 (``angle`` to 0.25°, ``size`` to 0.1 %);
* view images, read only by PoseNet training (``MapBundle.view_source``), as thumbnails
  ``thumbnail_width`` wide (PoseNet's input is 224 wide) with the camera scaled alike
  (``MapBundle.image_camera``), or dropped.

Everything else (views, 3D points, words, vocabularies, index, co-similarity, topology, tiles) is
copied byte for byte: retrieval is exactly the input's. The input is never modified; the output is
written atomically and checksummed like any bundle. ``docs/map_bundle.md`` has the sizes and the
accuracy before and after.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field, model_validator

from geoloc_ros.bovw.descriptor_codec import ProductQuantizer
from geoloc_ros.config import StrictModel
from geoloc_ros.mapping.container import BundleWriter, Verification
from geoloc_ros.mapping.errors import BundleError
from geoloc_ros.mapping.map import (
    DESCRIPTOR_CODEBOOK,
    DESCRIPTOR_CODES,
    FEATURE_STORAGE,
    HALF_PRECISION_COLUMNS,
    IMAGE_BYTES,
    IMAGE_OFFSETS,
    FeatureStorage,
    MapBundle,
)
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)

_CHUNK_ROWS = 1 << 18


class CompactConfig(StrictModel):
    """What :func:`compact_bundle` changes (YAML with ``geoloc map compact --config``)."""

    descriptors: Literal["raw", "pq"] = Field("pq", description="descriptor storage")
    pq_bytes: int = Field(64, ge=1, le=128, description="bytes per descriptor with pq (divides 128)")
    train_descriptors: int = Field(200_000, ge=256, description="sample the PQ codebook is trained on")
    half_precision: bool = Field(True, description="size, angle, response as float16")
    images: Literal["keep", "thumbnail", "drop"] = Field("thumbnail", description="view images")
    thumbnail_width: int = Field(320, ge=16, description="width of thumbnails (height keeps the aspect)")
    jpeg_quality: int = Field(90, ge=1, le=100, description="JPEG quality of thumbnails")
    seed: int = 0

    @model_validator(mode="after")
    def _pq_bytes_divide(self) -> CompactConfig:
        if self.descriptors == "pq" and 128 % self.pq_bytes:
            raise ValueError(f"pq_bytes must divide 128, got {self.pq_bytes}")
        return self


@dataclass(frozen=True)
class CompactSummary:
    path: Path
    n_views: int
    bytes_before: int
    bytes_after: int
    pq_relative_error: float | None  # median |decoded - raw| / |raw| over the training sample

    @property
    def bytes_per_view_before(self) -> float:
        return self.bytes_before / max(self.n_views, 1)

    @property
    def bytes_per_view_after(self) -> float:
        return self.bytes_after / max(self.n_views, 1)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "views": self.n_views,
            "bytes_before": self.bytes_before,
            "bytes_after": self.bytes_after,
            "bytes_per_view_before": round(self.bytes_per_view_before),
            "bytes_per_view_after": round(self.bytes_per_view_after),
            "pq_relative_error": self.pq_relative_error,
        }


def compact_bundle(
    bundle_dir: str | Path,
    out_dir: str | Path,
    config: CompactConfig | None = None,
    overwrite: bool = False,
    verify: Verification = "full",
) -> CompactSummary:
    """Write a compact copy of the bundle at ``bundle_dir`` into ``out_dir`` (see the module docstring)."""
    cfg = config if config is not None else CompactConfig()
    source = Path(bundle_dir)
    out = Path(out_dir)
    if out.resolve() == source.resolve():
        raise BundleError(f"{out}: compact into a new directory, not over the input bundle")
    bundle = MapBundle.open(source, verify=verify)
    if cfg.descriptors == "pq" and bundle.feature_storage.descriptors == "pq":
        raise BundleError(
            f"{source}: descriptors are already product-quantised ({bundle.feature_storage.pq_bytes} bytes); "
            "compact the bundle they were quantised from"
        )
    n_features = bundle.n_features
    narrowed = [
        n for n in HALF_PRECISION_COLUMNS if cfg.half_precision and n not in bundle.feature_storage.float16
    ]
    replaced = {f"features/{name}.npy" for name in narrowed}
    if cfg.descriptors == "pq":
        replaced.add("features/descriptors.npy")
    if cfg.images != "keep":
        replaced |= {f"{IMAGE_BYTES}.npy", f"{IMAGE_OFFSETS}.npy"}
    error: float | None = None
    with BundleWriter(out, overwrite=overwrite) as writer:
        writer.copy_members(bundle.bundle, replaced.__contains__)
        float16 = tuple(
            n for n in HALF_PRECISION_COLUMNS if n in narrowed or n in bundle.feature_storage.float16
        )
        for name in narrowed:
            _store(
                writer,
                f"features/{name}",
                _chunks(bundle, name, np.float16),
                n_features,
                np.zeros(0, np.float16),
            )
        storage = FeatureStorage(
            descriptors=cfg.descriptors if bundle.feature_storage.descriptors == "raw" else "pq",
            pq_bytes=cfg.pq_bytes if cfg.descriptors == "pq" else bundle.feature_storage.pq_bytes,
            float16=float16,
        )
        if cfg.descriptors == "pq":
            codec, error = _train_codec(bundle, cfg)
            writer.add_array(DESCRIPTOR_CODEBOOK, codec.codebook)
            codes = (codec.encode(chunk) for chunk in _chunks(bundle, "descriptors", None))
            _store(writer, DESCRIPTOR_CODES, codes, n_features, np.zeros((0, cfg.pq_bytes), np.uint8))
        images = dict(bundle.manifest.get("images") or {})
        if cfg.images == "thumbnail" and bundle.has_images:
            images.update(_write_thumbnails(bundle, writer, cfg))
        elif cfg.images != "keep":
            images = {"stored": False}
        metadata = bundle.bundle.metadata
        metadata[FEATURE_STORAGE] = storage.to_manifest()
        metadata["images"] = images
        metadata["compaction"] = {
            "compacted_from": str(bundle.path),
            "config": cfg.model_dump(),
            "pq_relative_error": error,
        }
        writer.commit(metadata)
    after = MapBundle.open(out, verify="sizes")
    summary = CompactSummary(out, bundle.n_views, bundle.bundle.total_bytes, after.bundle.total_bytes, error)
    logger.info(
        "compacted %s: %.1f kB -> %.1f kB per view",
        source,
        summary.bytes_per_view_before / 1e3,
        summary.bytes_per_view_after / 1e3,
    )
    return summary


def _store(
    writer: BundleWriter, name: str, chunks: Iterator[np.ndarray], rows: int, empty: np.ndarray
) -> None:
    if rows:
        writer.add_concatenated(name, chunks, rows)
    else:
        writer.add_array(name, empty)


def _chunks(bundle: MapBundle, name: str, dtype: type | None) -> Iterator[np.ndarray]:
    """Column ``name`` of every feature, in chunks of rows (raw storage), optionally cast."""
    column = bundle.bundle.array(f"features/{name}")
    for start in progress_bar(range(0, len(column), _CHUNK_ROWS), desc=f"compacting {name}", unit="chunk"):
        chunk = np.asarray(column[start : start + _CHUNK_ROWS])
        yield chunk if dtype is None else chunk.astype(dtype)


def _train_codec(bundle: MapBundle, cfg: CompactConfig) -> tuple[ProductQuantizer, float]:
    """The PQ codebook on a seeded sample of the bundle's descriptors, and its median relative error."""
    descriptors = bundle.bundle.array("features/descriptors")
    n = len(descriptors)
    if n < 256:
        raise BundleError(f"{bundle.path}: {n} features are too few to train a PQ codebook (256 needed)")
    rng = np.random.default_rng(cfg.seed)
    rows = np.sort(rng.choice(n, size=min(cfg.train_descriptors, n), replace=False))
    sample = np.asarray(descriptors[rows])
    codec = ProductQuantizer.train(sample, cfg.pq_bytes, seed=cfg.seed)
    raw = sample.astype(np.float32)
    decoded = codec.decode(codec.encode(sample)).astype(np.float32)
    norms = np.linalg.norm(raw, axis=1)
    relative = np.linalg.norm(decoded - raw, axis=1)[norms > 0] / norms[norms > 0]
    error = float(np.median(relative)) if len(relative) else 0.0
    logger.info(
        "PQ %d bytes trained on %d descriptors: median relative error %.3f", cfg.pq_bytes, len(rows), error
    )
    return codec, round(error, 4)


def _write_thumbnails(bundle: MapBundle, writer: BundleWriter, cfg: CompactConfig) -> dict[str, Any]:
    """Thumbnails of every view image (JPEG), their offsets, and the manifest's ``images`` fields."""
    camera = bundle.image_camera
    width = min(cfg.thumbnail_width, camera.width)
    target = camera.scaled(width / camera.width)
    chunks: list[bytes] = []
    offsets = np.zeros(bundle.n_views + 1, dtype=np.int64)
    params = [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]
    for view in progress_bar(range(bundle.n_views), desc="thumbnails", unit="view"):
        image = bundle.view_image(view)
        if target.size != camera.size:
            image = cv2.resize(image, target.size, interpolation=cv2.INTER_AREA)
        ok, encoded = cv2.imencode(".jpg", image, params)
        if not ok:
            raise BundleError(f"{bundle.path}: view {view}: JPEG encoding failed")
        chunks.append(encoded.tobytes())
        offsets[view + 1] = offsets[view] + len(chunks[-1])
    data = np.frombuffer(b"".join(chunks), dtype=np.uint8)
    writer.add_array(IMAGE_BYTES, data)
    writer.add_array(IMAGE_OFFSETS, offsets)
    return {
        "stored": True,
        "format": "jpeg",
        "jpeg_quality": cfg.jpeg_quality,
        "bytes": len(data),
        "width": target.width,
        "height": target.height,
    }
