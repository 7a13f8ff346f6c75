"""Benchmark: the on-board retrieval memory on a city-scale map, with the index paged by tile.

A synthetic city of ``--views`` views (default 1 000 000) on a street grid (``--city-m`` square,
a street every ``--street-m``), each view a bag of ``--view-sift`` + ``--view-mser`` words drawn
from the power law of bench/bench_retrieval_scaling.py over 30000 + 8000 words (the map
defaults), is written once to ``--dir`` in the bundle's index layout, sorted by 250 m tiles
(``index.counts.*``, ``index.norms``, ``index.df/idf``, ``position.npy``; the word-major posting
lists, read only by global retrieval without a prior, are not written). Then, in a fresh process
(its peak RSS is its own), a vehicle drives ``--drive-km`` across the city at 14 m/s and every
``--every-s`` seconds a query (a noisy copy of a view near the vehicle, ``--query-sift`` +
``--query-mser`` words, 30 % from the view) is scored against the views within ``--prior-m`` of
the vehicle by :class:`geoloc_ros.mapping.paging.TilePagedIndex` (``--max-tiles`` resident),
with :meth:`~geoloc_ros.mapping.paging.TilePagedIndex.prefetch` along the direction of travel
before each query. Reported: peak RSS of the process (and before the index was opened), CPU ms
per query on one core (median / p95; queries that had to read a tile apart), tiles read and
bytes read, and top-1 recovery of the source view.

    .venv/bin/python bench/bench_city_paging.py --dir /work/data/bundle-scale/city1m [--views 1000000]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import time
from pathlib import Path

import numpy as np
from renamed_options import parse_args

from geoloc_ros.bovw.index import INDEX_FORMAT
from geoloc_ros.mapping.tiles import TileTable, tile_sort_order

WORDS = {"sift": 30000, "mser": 8000}
SLOPE = 0.4  # p(rank) ~ rank^-0.4 (bench_retrieval_scaling.py)
TILE_M = 250.0


def draw_words(
    rng: np.random.Generator, shape: tuple[int, int], n_words: int, permutation: np.ndarray
) -> np.ndarray:
    """Power-law word ids by inverse CDF (CDF of rank^-s over ranks ~ r^(1-s))."""
    u = rng.random(shape)
    ranks = np.minimum((u ** (1.0 / (1.0 - SLOPE)) * n_words).astype(np.int64), n_words - 1)
    return permutation[ranks]


def generate(args: argparse.Namespace) -> None:
    folder: Path = args.dir
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    n = args.views
    # Views on a street grid: a street every street_m along x and y.
    streets = np.arange(0.0, args.city_m + 1e-9, args.street_m)
    along = rng.uniform(0.0, args.city_m, n)
    across = streets[rng.integers(0, len(streets), n)] + rng.normal(0.0, 3.0, n)
    horizontal = rng.random(n) < 0.5
    xy = np.where(horizontal[:, None], np.column_stack([along, across]), np.column_stack([across, along]))
    order = tile_sort_order(xy, TILE_M)
    positions = np.column_stack([xy[order], np.full(n, 2.5)])
    np.save(folder / "position.npy", positions)
    tiles = TileTable.from_sorted_positions(positions, TILE_M)
    np.save(folder / "tiles.keys.npy", tiles.keys)
    np.save(folder / "tiles.starts.npy", tiles.starts)
    permutations = {
        bag: np.random.default_rng(args.seed + i).permutation(w) for i, (bag, w) in enumerate(WORDS.items())
    }
    offsets = np.array([0, WORDS["sift"]])
    sizes = np.array(list(WORDS.values()))
    per_view = {"sift": args.view_sift, "mser": args.view_mser}
    n_words = int(sizes.sum())
    # One block of views drawn from the power law; the city repeats it with every block's word ids
    # shifted cyclically within each bag (a relabelling: the same statistics, other words), which
    # makes a million views affordable to generate on a shared machine.
    block = args.chunk
    keys = [
        draw_words(rng, (block, per_view[bag]), WORDS[bag], permutations[bag]).astype(np.int64) + offsets[b]
        for b, bag in enumerate(WORDS)
    ]
    row_ids = np.repeat(np.arange(block, dtype=np.int64), sum(per_view.values()))
    unique, base_counts = np.unique(
        row_ids * n_words + np.concatenate(keys, axis=1).reshape(-1), return_counts=True
    )
    base_rows = unique // n_words
    base_cols = (unique % n_words).astype(np.int64)
    base_bag = (base_cols >= WORDS["sift"]).astype(np.int64)
    base_local = base_cols - offsets[base_bag]
    base_counts = np.minimum(base_counts, 65535).astype(np.uint16)
    base_indptr = np.concatenate([[0], np.cumsum(np.bincount(base_rows, minlength=block))])
    n_blocks = -(-n // block)
    shifts = rng.integers(0, sizes.min(), n_blocks)
    # Document frequencies: the block's, shifted by each block's shift (a circular sum).
    df = np.zeros(n_words, np.int64)
    for b in range(2):
        base_df = np.bincount(base_local[base_bag == b], minlength=sizes[b])
        shift_hist = np.bincount(shifts, minlength=sizes[b])
        spectrum = np.fft.rfft(base_df) * np.fft.rfft(shift_hist)
        df[offsets[b] : offsets[b] + sizes[b]] = np.rint(np.fft.irfft(spectrum, n=sizes[b])).astype(np.int64)
    idf = np.log((n + 1.0) / (np.maximum(df, 0) + 1.0)).astype(np.float32)
    entries = len(unique)
    total = entries * (n // block) + (int(base_indptr[n % block]) if n % block else 0)
    indptr = np.zeros(n + 1, np.int64)
    indices = np.lib.format.open_memmap(folder / "index.counts.indices.npy", "w+", np.int32, (total,))
    data = np.lib.format.open_memmap(folder / "index.counts.data.npy", "w+", np.uint16, (total,))
    norms = np.zeros((n, 2), np.float32)
    tf = np.sqrt(base_counts.astype(np.float32))
    local32, off32 = base_local.astype(np.int32), offsets[base_bag].astype(np.int32)
    size32, slot = sizes[base_bag].astype(np.int32), base_rows * 2 + base_bag
    cols_buffer = np.empty(entries, np.int32)
    at = 0
    start = time.perf_counter()
    for k in range(n_blocks):
        first = k * block
        rows = min(block, n - first)
        m = int(base_indptr[rows])
        cols = cols_buffer[:m]
        np.add(local32[:m], shifts[k], out=cols)
        np.remainder(cols, size32[:m], out=cols)
        cols += off32[:m]
        indices[at : at + m] = cols
        data[at : at + m] = base_counts[:m]
        indptr[first + 1 : first + rows + 1] = at + base_indptr[1 : rows + 1]
        weight = tf[:m] * idf[cols]
        weight *= weight
        norms[first : first + rows] = np.sqrt(
            np.bincount(slot[:m], weight, minlength=rows * 2).reshape(rows, 2)
        )
        at += m
        if k % 20 == 0:
            print(f"  {first + rows} / {n} views, {time.perf_counter() - start:.0f} s", flush=True)
    indices.flush()
    data.flush()
    del indices, data
    df_int = df
    np.save(folder / "index.counts.indptr.npy", indptr)
    np.save(folder / "index.norms.npy", norms)
    np.save(folder / "index.df.npy", df_int)
    np.save(folder / "index.idf.npy", idf)
    meta = {
        "format": INDEX_FORMAT,
        "bags": WORDS,
        "n_views": n,
        "idf_views": n,
        "postings": int(at),
        "config": {"tf_transform": "sqrt"},
    }
    (folder / "index.json").write_text(json.dumps(meta))
    print(
        f"generated {n} views, {at} entries, {len(tiles.keys)} tiles in {time.perf_counter() - start:.0f} s"
    )


def drive(args: argparse.Namespace) -> dict:
    rss_start = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    from geoloc_ros.mapping.paging import TilePagedIndex

    folder: Path = args.dir
    tiles = TileTable.from_arrays(
        TILE_M, np.load(folder / "tiles.keys.npy"), np.load(folder / "tiles.starts.npy")
    )
    rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    pager = TilePagedIndex(folder, "index", tiles, folder / "position.npy", max_tiles=args.max_tiles)
    rng = np.random.default_rng(args.seed + 7)
    # A drive along the street grid: east along one street, north along another, ... (turns every 1-2 km).
    speed, dt = 14.0, args.every_s
    position = np.array([args.street_m * 2, args.street_m * 3])
    heading = np.array([1.0, 0.0])
    travelled, next_turn = 0.0, 1500.0
    n_words = sum(WORDS.values())
    query_ms: list[float] = []
    prefetch_load_ms: list[float] = []
    recovered = 0
    n_queries = 0
    while travelled < args.drive_km * 1000.0:
        step = speed * dt
        position = position + heading * step
        travelled += step
        if (
            travelled >= next_turn
            or np.any(position < args.street_m)
            or np.any(position > args.city_m - args.street_m)
        ):
            heading = (
                np.array([-heading[1], heading[0]])
                if rng.random() < 0.5
                else np.array([heading[1], -heading[0]])
            )
            if np.any(position + heading * 1500.0 < 0) or np.any(position + heading * 1500.0 > args.city_m):
                heading = -heading
            next_turn = travelled + rng.uniform(1000.0, 2000.0)
        start = time.thread_time()
        loads_before = len(pager.stats.loaded)
        pager.prefetch(position, args.prior_m, velocity_xy=heading * speed, lookahead_s=args.lookahead_s)
        prefetch_ms = (time.thread_time() - start) * 1e3
        # The query: a noisy copy of a view near the vehicle.
        near = [int(t) for t in tiles.tiles_within(position, args.prior_m)]
        tile = pager.tile(near[0])
        inside = np.flatnonzero(np.hypot(*(tile.positions - position).T) <= args.prior_m)
        if len(inside) == 0:
            continue
        source = tile.first_view + int(inside[rng.integers(0, len(inside))])
        words = tile.weights[[source - tile.first_view]].indices
        words = words[rng.permutation(len(words))]
        words_query = {}
        bags = (
            ("sift", 0, WORDS["sift"], args.query_sift),
            ("mser", WORDS["sift"], n_words, args.query_mser),
        )
        for bag, lo, hi, count in bags:
            own = words[(words >= lo) & (words < hi)] - lo
            k = min(len(own), round(0.3 * count))
            words_query[bag] = np.concatenate([own[:k], rng.integers(0, hi - lo, count - k)])
        start = time.thread_time()
        ids, scores = pager.scores_near(words_query, position, args.prior_m)
        query_ms.append((time.thread_time() - start) * 1e3)
        if len(pager.stats.loaded) > loads_before:
            prefetch_load_ms.append(prefetch_ms)
        n_queries += 1
        recovered += int(ids[int(np.argmax(scores))] == source)
    rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "views": tiles.n_rows,
        "tiles": tiles.n_tiles,
        "views_per_tile": tiles.n_rows / tiles.n_tiles,
        "queries": n_queries,
        "drive_km": args.drive_km,
        "prior_m": args.prior_m,
        "max_tiles": args.max_tiles,
        "peak_rss_mb": rss_end,
        "rss_before_index_mb": rss_imports,
        "rss_at_start_mb": rss_start,
        "resident_tile_mb": pager.resident_bytes / 1e6,
        "query_ms_median": float(np.median(query_ms)),
        "query_ms_p95": float(np.percentile(query_ms, 95)),
        "prefetch_ms_median_when_reading": float(np.median(prefetch_load_ms)) if prefetch_load_ms else 0.0,
        "prefetches_reading_tiles": len(prefetch_load_ms),
        **pager.stats.to_dict(),
        "top1": recovered / max(n_queries, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path, required=True, help="where the synthetic city index is (written once)"
    )
    parser.add_argument("--views", type=int, default=1_000_000)
    parser.add_argument("--city-m", type=float, default=5000.0)
    parser.add_argument("--street-m", type=float, default=100.0)
    parser.add_argument("--view-sift", type=int, default=1100)
    parser.add_argument("--view-mser", type=int, default=260)
    parser.add_argument("--query-sift", type=int, default=500)
    parser.add_argument("--query-mser", type=int, default=180)
    parser.add_argument("--chunk", type=int, default=5000)
    parser.add_argument("--drive-km", type=float, default=10.0)
    parser.add_argument("--every-s", type=float, default=2.0, help="seconds of driving between queries")
    parser.add_argument("--prior-m", type=float, default=60.0, help="radius of the position prior")
    parser.add_argument("--lookahead-s", type=float, default=15.0)
    parser.add_argument("--max-tiles", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", type=Path)
    args = parse_args(parser)
    context = multiprocessing.get_context("spawn")
    if not (args.dir / "index.json").is_file():
        with context.Pool(1) as pool:
            pool.apply(generate, (args,))
    with context.Pool(1) as pool:
        result = pool.apply(drive, (args,))
    for key, value in result.items():
        print(f"{key:>26s}: {value:.3f}" if isinstance(value, float) else f"{key:>26s}: {value}")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
