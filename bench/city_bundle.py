"""A city-scale map bundle with a real map inside: the synthetic city of bench/bench_city_paging.py
(``--city``, its index rows reused as they are) around a real map bundle (``--real``, e.g. the
compacted ``standard`` map), written as one map bundle that :class:`~geoloc_ros.mapping.map.MapBundle`
opens and the localizer runs on.

* **Where**: the real views keep their ENU positions (the real map's origin is the city's); the
  city is shifted by whole tiles so that the real town lies in its middle. Synthetic views within
  ``--clearance-m`` of a real view are moved, rows unchanged, to a strip of tiles east of the city
  (a real city has no second copy of the town's streets), so every synthetic view is kept.
* **Index**: the count rows of both, in tile order (one pass over the city's 8 GB of rows, read with
  positioned reads and dropped from the page cache behind), with the document frequencies summed,
  the IDF of all the views and every view's norms recomputed with it: the real views are weighted
  as a city map would weigh them. The word-major posting lists (global retrieval with no prior at
  all) are not written: this bundle is for localization with a position prior, where retrieval
  reads the count rows of the tiles around the prior (``retrieval.paged_tiles``).
* **Features**: every feature column holds ``--features-per-view`` rows for each synthetic view,
  as a sparse file (holes, zeros, no disk): the column files have the size a city's would have
  (the bundle's apparent size), but the synthetic views' features carry nothing and are never a
  candidate of the real drive (they are at least ``--clearance-m`` from it).
* **Views, panoramas, co-similarity, topology**: the real ones; synthetic views are grouped by 15
  into synthetic panoramas (pose records without images) and have no co-similarity or topology
  edges. No view images (PoseNet is not part of this benchmark).

The manifest's SHA-256 of the sparse files is computed over their holes without reading them
(``SEEK_DATA``/``SEEK_HOLE``). Written once to ``--out`` (8.3 GB on disk, 96.5 GB apparent; 11 min)::

    nice -n 10 .venv/bin/python bench/city_bundle.py --city /work/data/bundle-scale/city1m \\
        --real /work/data/bundle-scale/maps/standard_pq64 --out /work/data/city/city1m_standard
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from scipy.spatial import cKDTree

from geoloc_ros.geo.enu import enu_to_geodetic
from geoloc_ros.mapping.container import FORMAT_NAME, FORMAT_VERSION, MANIFEST_NAME, Bundle
from geoloc_ros.mapping.map import MapBundle
from geoloc_ros.mapping.paging import NpyRows
from geoloc_ros.mapping.tiles import TileTable, tile_sort_order

VIEWS_PER_PANORAMA = 15
CHUNK_ENTRIES = 1 << 24
SYNC_BYTES = 1 << 29
ZEROS = bytes(1 << 24)


def sparse_sha256(path: Path) -> str:
    """SHA-256 of a file whose holes are hashed as the zeros they read as, without reading them."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as handle:
        fd = handle.fileno()
        position = 0
        while position < size:
            try:
                data = os.lseek(fd, position, os.SEEK_DATA)
            except OSError:  # no data after position: a hole to the end
                data = size
            while position < data:
                step = min(len(ZEROS), data - position)
                digest.update(ZEROS[:step])
                position += step
            if position >= size:
                break
            hole = os.lseek(fd, position, os.SEEK_HOLE)
            while position < hole:
                chunk = os.pread(fd, min(1 << 24, hole - position), position)
                digest.update(chunk)
                position += len(chunk)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return digest.hexdigest()


class HashedNpyWriter:
    """A ``.npy`` of known dtype and shape written sequentially, hashed as written."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.path, self.dtype = path, np.dtype(dtype)
        self.handle: BinaryIO = open(path, "wb")  # noqa: SIM115 (closed in close())
        self.digest = hashlib.sha256()
        header = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False, "shape": shape}
        buffer = io.BytesIO()
        np.lib.format.write_array_header_1_0(buffer, header)
        self.handle.write(buffer.getvalue())
        self.digest.update(buffer.getvalue())
        self.unsynced = 0

    def write(self, array: np.ndarray) -> None:
        data = np.ascontiguousarray(array, dtype=self.dtype).tobytes()
        self.handle.write(data)
        self.digest.update(data)
        self.unsynced += len(data)
        if self.unsynced > SYNC_BYTES:  # keep the page cache of a shared machine for the others
            self.handle.flush()
            os.fdatasync(self.handle.fileno())
            os.posix_fadvise(self.handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
            self.unsynced = 0

    def close(self) -> str:
        self.handle.flush()
        os.fdatasync(self.handle.fileno())
        os.posix_fadvise(self.handle.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        self.handle.close()
        return self.digest.hexdigest()


def optical_poses(position: np.ndarray, yaw_deg: np.ndarray) -> np.ndarray:
    """``T_map_optical`` of level cameras looking along compass bearings ``yaw_deg``."""
    yaw = np.radians(yaw_deg)
    forward = np.column_stack([np.sin(yaw), np.cos(yaw), np.zeros_like(yaw)])
    right = np.column_stack([np.cos(yaw), -np.sin(yaw), np.zeros_like(yaw)])
    down = np.tile([0.0, 0.0, -1.0], (len(yaw), 1))
    poses = np.zeros((len(yaw), 4, 4))
    poses[:, :3, 0], poses[:, :3, 1], poses[:, :3, 2] = right, down, forward
    poses[:, :3, 3] = position
    poses[:, 3, 3] = 1.0
    return poses


def build(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    real = MapBundle.open(args.real, verify="sizes")
    city: Path = args.city
    out: Path = args.out
    staging = out.with_name(out.name + ".partial")
    if staging.exists():
        shutil.rmtree(staging)
    tile_m = real.tiles.tile_size_m
    city_meta = json.loads((city / "index.json").read_text())
    n_city = int(city_meta["n_views"])
    n_real = real.n_views
    n = n_city + n_real

    # ---------------------------------------------------------------- where every view goes
    city_xy = np.load(city / "position.npy")[:, :2]
    real_xy = np.asarray(real.views.position[:, :2], dtype=np.float64)
    centre_tiles = np.round((city_xy.min(0) + city_xy.max(0)) / 2 / tile_m - real_xy.mean(0) / tile_m)
    city_xy = city_xy - centre_tiles * tile_m
    near_real = cKDTree(real_xy).query(city_xy, distance_upper_bound=args.clearance_m)[0] < np.inf
    strip = np.ceil((city_xy[:, 0].max() - real_xy[:, 0].min() + args.clearance_m) / tile_m + 2) * tile_m
    city_xy[near_real, 0] += strip
    xy = np.concatenate([city_xy, real_xy])
    order = tile_sort_order(xy, tile_m)  # stable: within a tile, the city's rows then the real ones
    del city_xy
    source_real = order >= n_city
    new_of_real = np.flatnonzero(source_real)  # output row of real view j (increasing in j)
    positions = np.column_stack([xy[order], np.full(n, 2.5)])
    positions[new_of_real] = np.asarray(real.views.position)
    tiles = TileTable.from_sorted_positions(positions, tile_m)
    print(
        f"{n_city} city + {n_real} real views, {int(near_real.sum())} city views moved to the east strip, "
        f"{tiles.n_tiles} tiles",
        flush=True,
    )
    staging.mkdir(parents=True)
    for folder in ("views", "features", "index", "panoramas", "tiles", "cosimilarity", "topology"):
        (staging / folder).mkdir()
    files: dict[str, dict[str, Any]] = {}

    def save(name: str, array: np.ndarray) -> None:
        path = staging / f"{name}.npy"
        np.save(path, np.ascontiguousarray(array), allow_pickle=False)
        files[f"{name}.npy"] = {"bytes": path.stat().st_size, "sha256": sparse_sha256(path)}

    def save_json(name: str, data: Any) -> None:
        path = staging / f"{name}.json"
        path.write_text(json.dumps(data), encoding="utf-8")
        files[f"{name}.json"] = {"bytes": path.stat().st_size, "sha256": sparse_sha256(path)}

    save("tiles/keys", tiles.keys)
    save("tiles/starts", tiles.starts)

    # ---------------------------------------------------------------- views and panoramas
    rng = np.random.default_rng(args.seed)
    n_real_panos = real.n_panoramas
    city_rows = np.flatnonzero(~source_real)
    city_source = order[city_rows]
    real_views = real.views
    pano = np.empty(n, np.int32)
    pano[city_rows] = n_real_panos + city_source // VIEWS_PER_PANORAMA
    pano[new_of_real] = np.asarray(real_views.pano_index)
    local = np.empty(n, np.int32)
    local[city_rows] = city_source % VIEWS_PER_PANORAMA
    local[new_of_real] = np.asarray(real_views.local_index)
    yaw = np.empty(n, np.float32)
    yaw[city_rows] = rng.uniform(0.0, 360.0, len(city_rows))
    yaw[new_of_real] = np.asarray(real_views.yaw_deg)
    per_view: dict[str, np.ndarray] = {
        "pano_index": pano,
        "local_index": local,
        "yaw_deg": yaw,
        "position": positions,
        "tile": tiles.row_tiles().astype(np.int32),
    }
    for name, dtype in (("kind", np.uint8), ("offset_m", np.float32), ("pitch_deg", np.float32)):
        column = np.zeros(n, dtype)
        column[new_of_real] = np.asarray(getattr(real_views, name))
        per_view[name] = column
    hole = np.zeros(n, np.float32)
    hole[new_of_real] = np.asarray(real_views.hole_ratio)
    per_view["hole_ratio"] = hole
    poses = optical_poses(positions, yaw.astype(np.float64))
    poses[new_of_real] = np.asarray(real_views.T_map_optical)
    per_view["T_map_optical"] = poses
    for name, array in per_view.items():
        save(f"views/{name}", array)
    del poses
    n_city_panos = -(-n_city // VIEWS_PER_PANORAMA)
    sums = np.zeros((n_city_panos, 3))
    for axis in range(3):
        sums[:, axis] = np.bincount(
            pano[city_rows] - n_real_panos, positions[city_rows, axis], minlength=n_city_panos
        )
    pano_xyz = (
        sums / np.maximum(np.bincount(pano[city_rows] - n_real_panos, minlength=n_city_panos), 1)[:, None]
    )
    save("panoramas/position", np.concatenate([np.asarray(real.panorama_positions), pano_xyz]))
    lat, lon, alt = enu_to_geodetic(pano_xyz, real.origin)
    records = list(real._records_json) + [
        {
            "id": f"city_{k:06d}",
            "lat": float(lat[k]),
            "lon": float(lon[k]),
            "alt": float(alt[k]),
            "heading_deg": 0.0,
            "camera_height_m": 2.5,
            "image": f"synthetic/city_{k:06d}.jpg",
        }
        for k in range(n_city_panos)
    ]
    save_json("panoramas/records", records)
    del records
    shutil.copyfile(real.path / "panoramas/virtual_offsets.json", staging / "panoramas/virtual_offsets.json")
    files["panoramas/virtual_offsets.json"] = dict(real.manifest["files"]["panoramas/virtual_offsets.json"])

    # ---------------------------------------------------------------- co-similarity and topology
    def remap(prefix: str, keys: tuple[str, ...]) -> None:
        arrays = {key: np.asarray(real.bundle.array(f"{prefix}/{key}")) for key in keys}
        counts = np.zeros(n, np.int64)
        counts[new_of_real] = np.diff(arrays["indptr"])
        save(f"{prefix}/indptr", np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))
        save(f"{prefix}/indices", new_of_real[arrays["indices"]].astype(arrays["indices"].dtype))
        value = "data" if "data" in keys else "distance_m"
        save(f"{prefix}/{value}", arrays[value])
        if "shape" in keys:
            save(f"{prefix}/shape", np.array([n, n], dtype=np.int64))

    remap("cosimilarity", ("indptr", "indices", "data", "shape"))
    remap("topology", ("indptr", "indices", "distance_m"))

    # ---------------------------------------------------------------- features (sparse columns)
    real_offsets = np.asarray(real.feature_offsets)
    counts = np.full(n, args.features_per_view, np.int64)
    counts[new_of_real] = np.diff(real_offsets)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    save("features/offsets", offsets)
    n_features = int(offsets[-1])
    # Real views' rows land in runs (the views of a tile are consecutive): copy run by run.
    starts = np.flatnonzero(np.diff(new_of_real, prepend=-2) != 1)
    runs = [(int(a), int(b)) for a, b in zip(starts, [*starts[1:], n_real], strict=True)]
    for rel in real.bundle.members("features/"):
        name = rel.removeprefix("features/").removesuffix(".npy")
        if name in ("offsets", "descriptor_codebook"):
            if name == "descriptor_codebook":
                shutil.copyfile(real.path / rel, staging / rel)
                files[rel] = dict(real.manifest["files"][rel])
            continue
        source = real.bundle.array(rel)
        path = staging / rel
        column = np.lib.format.open_memmap(path, "w+", source.dtype, (n_features, *source.shape[1:]))
        for a, b in runs:  # real views a..b-1 are output views new_of_real[a]..+(b-a)
            lo, hi = int(real_offsets[a]), int(real_offsets[b])
            first = int(offsets[new_of_real[a]])
            column[first : first + hi - lo] = source[lo:hi]
        column.flush()
        del column
        files[rel] = {"bytes": path.stat().st_size, "sha256": sparse_sha256(path)}
        print(f"  {rel}: {path.stat().st_size / 1e9:.2f} GB apparent", flush=True)

    # ---------------------------------------------------------------- index (one pass)
    real_index = real.bundle
    r_indptr = np.asarray(real_index.array("index/index.counts.indptr"), np.int64)
    r_indices = np.asarray(real_index.array("index/index.counts.indices"))
    r_data = np.asarray(real_index.array("index/index.counts.data"))
    c_indptr = np.load(city / "index.counts.indptr.npy").astype(np.int64)
    c_indices = NpyRows(city / "index.counts.indices.npy")
    c_data = NpyRows(city / "index.counts.data.npy")
    bags = {str(k): int(v) for k, v in city_meta["bags"].items()}
    real_meta = json.loads((real.path / "index/index.json").read_text())
    if bags != real_meta["bags"] or city_meta["config"] != real_meta["config"]:
        raise SystemExit(f"the city's index ({bags}) and the real map's ({real_meta['bags']}) differ")
    df = np.load(city / "index.df.npy").astype(np.int64) + np.asarray(
        real_index.array("index/index.df"), np.int64
    )
    idf = np.log((n + 1.0) / (df + 1.0)).astype(np.float32)
    first_mser = bags["sift"]
    counts_per_row = np.empty(n, np.int64)
    counts_per_row[city_rows] = np.diff(c_indptr)[city_source]
    counts_per_row[new_of_real] = np.diff(r_indptr)
    indptr = np.concatenate([[0], np.cumsum(counts_per_row)]).astype(np.int64)
    total = int(indptr[-1])
    norms = np.zeros((n, 2), np.float32)
    w_indices = HashedNpyWriter(staging / "index/index.counts.indices.npy", np.dtype(np.int32), (total,))
    w_data = HashedNpyWriter(staging / "index/index.counts.data.npy", np.dtype(np.uint16), (total,))

    def emit(row0: int, row_counts: np.ndarray, indices: np.ndarray, data: np.ndarray) -> None:
        w_indices.write(indices)
        w_data.write(data)
        weight = np.sqrt(data.astype(np.float32)) * idf[indices]
        slot = np.repeat(np.arange(len(row_counts), dtype=np.int64) * 2, row_counts) + (indices >= first_mser)
        sq = np.bincount(slot, weight * weight, minlength=2 * len(row_counts))
        norms[row0 : row0 + len(row_counts)] = np.sqrt(sq).reshape(-1, 2)

    # Output rows in runs of consecutive sources of one kind (city or real).
    breaks = np.flatnonzero((np.diff(order) != 1) | (source_real[1:] != source_real[:-1])) + 1
    run_starts = np.concatenate([[0], breaks])
    run_stops = np.concatenate([breaks, [n]])
    start_time = time.perf_counter()
    done_rows = 0
    for a, b in zip(run_starts.tolist(), run_stops.tolist(), strict=True):
        src = int(order[a])
        if source_real[a]:
            j0, j1 = src - n_city, src - n_city + (b - a)
            lo, hi = int(r_indptr[j0]), int(r_indptr[j1])
            emit(a, np.diff(r_indptr[j0 : j1 + 1]), r_indices[lo:hi], r_data[lo:hi])
            continue
        row = a
        while row < b:  # chunks of at most CHUNK_ENTRIES entries (whole rows)
            s0 = int(order[row])
            stop = int(np.searchsorted(c_indptr, c_indptr[s0] + CHUNK_ENTRIES, side="right")) - 1
            stop = max(min(stop, s0 + (b - row)), s0 + 1)
            lo, hi = int(c_indptr[s0]), int(c_indptr[stop])
            emit(row, np.diff(c_indptr[s0 : stop + 1]), c_indices.read(lo, hi), c_data.read(lo, hi))
            for rows in (c_indices, c_data):
                os.posix_fadvise(rows._fd, 0, 0, os.POSIX_FADV_DONTNEED)
            row += stop - s0
        if b - done_rows > 50_000 or b == n:
            done_rows = b
            print(f"  index: {b} / {n} views, {time.perf_counter() - start_time:.0f} s", flush=True)
    for key, writer in (("indices", w_indices), ("data", w_data)):
        digest = writer.close()
        files[f"index/index.counts.{key}.npy"] = {"bytes": writer.path.stat().st_size, "sha256": digest}
    save("index/index.counts.indptr", indptr)
    save("index/index.norms", norms)
    save("index/index.df", df)
    save("index/index.idf", idf)
    index_meta = {
        "format": real_meta["format"],
        "bags": bags,
        "n_views": n,
        "idf_views": n,
        "postings": total,
        "config": real_meta["config"],
    }
    save_json("index/index", index_meta)

    # ---------------------------------------------------------------- vocabulary, manifest
    for rel in real.bundle.members("vocabulary/"):
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(real.path / rel, staging / rel)
        files[rel] = dict(real.manifest["files"][rel])
    metadata = {k: v for k, v in real.bundle.metadata.items() if k != "images"}
    metadata["counts"] = {
        "panoramas": n_real_panos + n_city_panos,
        "views": n,
        "rectified_views": n_city + int(real.manifest["counts"]["rectified_views"]),
        "virtual_views": int(real.manifest["counts"]["virtual_views"]),
        "features": n_features,
    }
    metadata["index"] = index_meta
    metadata["tiles"] = {"tile_size_m": tile_m, "n_tiles": tiles.n_tiles}
    metadata["city"] = {
        "what": "bench/city_bundle.py: a synthetic city around a real map (see its docstring)",
        "real_map": str(real.path),
        "city_index": str(city),
        "city_views": n_city,
        "real_views": n_real,
        "city_shift_m": (-centre_tiles * tile_m).tolist(),
        "clearance_m": args.clearance_m,
        "moved_city_views": int(near_real.sum()),
        "features_per_city_view": args.features_per_view,
        "postings_written": False,
    }
    manifest = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "producer": "bench/city_bundle.py",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()),
        **metadata,
        "files": dict(sorted(files.items())),
    }
    (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    Bundle.open(staging, verify="sizes")
    if out.exists():
        shutil.rmtree(out)
    staging.rename(out)
    apparent = sum(e["bytes"] for e in files.values())
    on_disk = sum(p.stat().st_blocks * 512 for p in out.rglob("*") if p.is_file())
    summary = {
        "views": n,
        "city_views": n_city,
        "real_views": n_real,
        "tiles": tiles.n_tiles,
        "features": n_features,
        "postings": total,
        "apparent_bytes": apparent,
        "on_disk_bytes": on_disk,
        "build_s": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(summary, indent=1))
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--city", type=Path, required=True, help="bench/bench_city_paging.py's city folder")
    parser.add_argument("--real", type=Path, required=True, help="a real map bundle (e.g. compacted)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--clearance-m", type=float, default=100.0)
    parser.add_argument("--features-per-view", type=int, default=928)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    summary = build(args)
    (args.out.parent / f"{args.out.name}.build.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
