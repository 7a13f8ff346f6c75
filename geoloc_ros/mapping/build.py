"""Build a map bundle from a panorama set, or add panoramas to one (``geoloc map build`` / ``map add``).

Pipeline of :func:`build_map`:

1. **Per panorama, in parallel** (:mod:`geoloc_ros.mapping.runner`: a local Dask cluster, a remote
   one, or this process): load the panorama and its depth, synthesize rectified and virtual views,
   extract features with each keypoint's 3D map point, encode view JPEGs
   (:func:`geoloc_ros.mapping.extract.process_panorama`). Results stream to a staging area on disk
   as they complete, with a bounded number of tasks in flight; a seeded, order-independent sample
   of descriptors is kept for the vocabularies.
2. **Vocabularies**: faiss k-means per bag (SIFT, MSER) on the sample.
3. **Quantisation**, in parallel: every feature's word in its bag's vocabulary.
4. **Assembly**: views sorted by geographic tile (then panorama, then rank in the panorama), so
   every tile is a contiguous row range of every array; features, words, 3D points and JPEGs are
   streamed view by view into memory-mapped arrays of the bundle.
5. **Index, co-similarity, topology, tiles**, then the manifest (format version, origin, camera,
   configs, vocabulary parameters, counts, the null-pixel table of virtual views, per-file
   checksums) and an atomic move into place: an interrupted build leaves nothing behind.

:func:`add_panoramas` processes only new panoramas (and existing ones whose street neighbourhood,
hence virtual views, the new ones change, when the given set holds them), quantises them with the
bundle's vocabularies (never retrained), and writes a new complete bundle with the index (IDF
recomputed over all views), co-similarity, topology and tiles rebuilt.

**Why one module of ~900 lines.** It is the one pipeline of ``map build`` and ``map add``: the
plan, the stages (sampling, vocabulary training, quantization, assembly) and the writing share the
per-view rows and feature columns of the bundle being built; the per-panorama work is already in
:mod:`geoloc_ros.mapping.extract` and the cluster in :mod:`geoloc_ros.mapping.runner`. A split of
the writing stage is planned once the map-refine work on this module has landed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np

from geoloc_ros.bovw.cosimilarity import (
    Topology,
    cosimilarity_on_edges,
    cosimilarity_to_arrays,
    cosimilarity_topk,
)
from geoloc_ros.bovw.errors import VocabularyError
from geoloc_ros.bovw.index import TfIdfIndex
from geoloc_ros.bovw.kinds import feature_kind
from geoloc_ros.bovw.vocabulary import Vocabularies, Vocabulary
from geoloc_ros.camera.pinhole import PinholeCamera
from geoloc_ros.config import load_yaml
from geoloc_ros.geo.enu import GeoOrigin
from geoloc_ros.gis.panorama_set import PROVIDER_UNCERTAINTY, PanoramaRecord, PanoramaSet, pose_uncertainty
from geoloc_ros.gis.virtual import (
    HoleRatioRow,
    PanoramaViews,
    StreetAxis,
    VirtualOffsetReport,
    hole_ratio_table,
    street_axes,
)
from geoloc_ros.io.atomic import check_output_writable
from geoloc_ros.mapping.config import MapBuildConfig
from geoloc_ros.mapping.container import Bundle, BundleWriter, Verification
from geoloc_ros.mapping.errors import MapBuildError
from geoloc_ros.mapping.extract import PanoramaResult, PanoramaTask, process_panorama, quantize_descriptors
from geoloc_ros.mapping.map import (
    COSIMILARITY_PREFIX,
    FEATURE_COLUMNS,
    FEATURE_OFFSETS,
    IMAGE_BYTES,
    IMAGE_OFFSETS,
    INDEX_DIR,
    INDEX_NAME,
    MAP_CONTENT,
    PANORAMA_POSITIONS,
    PANORAMA_RECORDS,
    PANORAMA_VIRTUAL_OFFSETS,
    TILE_KEYS,
    TILE_STARTS,
    TOPOLOGY_PREFIX,
    VIEW_ARRAYS,
    VOCABULARY_DIR,
    MapBundle,
    ViewKind,
)
from geoloc_ros.mapping.runner import TaskRunner, open_runner
from geoloc_ros.mapping.staging import KeyedSample, StagingArea, panorama_sample_keys
from geoloc_ros.mapping.tiles import TileTable, tile_sort_order
from geoloc_ros.mapping.topology import adjacent_panorama_pairs, view_topology
from geoloc_ros.mapping.vocabulary_training import train_two_level
from geoloc_ros.progress import progress_bar

logger = logging.getLogger(__name__)

__all__ = [
    "BuildSummary",
    "MapBuildConfig",
    "add_panoramas",
    "build_map",
    "load_build_config",
]

_EXISTING_SLOT = -1  # ViewRows.slot of a view copied from an existing bundle


def load_build_config(path: str | Path) -> MapBuildConfig:
    """A :class:`MapBuildConfig` from YAML (errors name the file and the field)."""
    return load_yaml(path, MapBuildConfig)


# ------------------------------------------------------------------------------------ summary
@dataclass
class BuildSummary:
    """What a build produced and what it cost (``geoloc map build`` prints it)."""

    bundle: Path
    n_panoramas: int
    n_views: int
    n_rectified_views: int
    n_virtual_views: int
    virtual_views_rendered: int
    virtual_views_discarded: int
    n_features: int
    n_tiles: int
    vocabulary_words: dict[str, int]
    bundle_bytes: int
    workers: int
    runner: str
    timings_s: dict[str, float]
    worker_seconds: dict[str, float]
    hole_ratio_table: list[dict[str, Any]]
    processed_panoramas: int
    added_panoramas: int = 0
    rerendered_panoramas: int = 0

    @property
    def bytes_per_view(self) -> float:
        return self.bundle_bytes / self.n_views if self.n_views else 0.0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["bundle"] = str(self.bundle)
        data["bytes_per_view"] = self.bytes_per_view
        return data


class _StageClock:
    """Wall-clock seconds per build stage (monotonic clock)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start


# ------------------------------------------------------------------------------------ view rows
@dataclass
class _ViewRows:
    """Per-view metadata of the bundle being built, one entry per view, before the tile sort.

    ``slot``/``row``: where the view's features live: staged panorama ``slot`` and its ``row``-th
    view, or (``slot == -1``) view ``row`` of the existing bundle.
    """

    pano_index: np.ndarray
    local_index: np.ndarray
    kind: np.ndarray
    offset_m: np.ndarray
    yaw_deg: np.ndarray
    pitch_deg: np.ndarray
    T_map_optical: np.ndarray
    hole_ratio: np.ndarray
    n_features: np.ndarray
    n_jpeg_bytes: np.ndarray
    slot: np.ndarray
    row: np.ndarray

    @classmethod
    def of_result(cls, pano_index: int, result: PanoramaResult) -> _ViewRows:
        n = result.n_views
        return cls(
            pano_index=np.full(n, pano_index, dtype=np.int32),
            local_index=np.arange(n, dtype=np.int32),
            kind=result.kind,
            offset_m=result.offset_m,
            yaw_deg=result.yaw_deg,
            pitch_deg=result.pitch_deg,
            T_map_optical=result.T_map_optical,
            hole_ratio=result.hole_ratio,
            n_features=np.diff(result.feature_offsets),
            n_jpeg_bytes=np.diff(result.jpeg_offsets),
            slot=np.full(n, pano_index, dtype=np.int64),
            row=np.arange(n, dtype=np.int64),
        )

    @classmethod
    def of_bundle(cls, bundle: MapBundle, views: np.ndarray) -> _ViewRows:
        v = bundle.views
        jpeg = (
            np.diff(np.asarray(bundle.bundle.array(IMAGE_OFFSETS)))[views]
            if bundle.has_images
            else np.zeros(len(views), np.int64)
        )
        return cls(
            pano_index=np.asarray(v.pano_index[views]),
            local_index=np.asarray(v.local_index[views]),
            kind=np.asarray(v.kind[views]),
            offset_m=np.asarray(v.offset_m[views]),
            yaw_deg=np.asarray(v.yaw_deg[views]),
            pitch_deg=np.asarray(v.pitch_deg[views]),
            T_map_optical=np.asarray(v.T_map_optical[views]),
            hole_ratio=np.asarray(v.hole_ratio[views]),
            n_features=np.diff(np.asarray(bundle.feature_offsets))[views],
            n_jpeg_bytes=jpeg,
            slot=np.full(len(views), _EXISTING_SLOT, dtype=np.int64),
            row=np.asarray(views, dtype=np.int64),
        )

    @classmethod
    def concatenate(cls, parts: list[_ViewRows]) -> _ViewRows:
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{name: np.concatenate([getattr(p, name) for p in parts]) for name in names})

    def take(self, order: np.ndarray) -> _ViewRows:
        return _ViewRows(**{f.name: getattr(self, f.name)[order] for f in dataclasses.fields(self)})

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def position(self) -> np.ndarray:
        return self.T_map_optical[:, :3, 3]


# ------------------------------------------------------------------------------------ plan
@dataclass
class _Plan:
    """What one build writes: the final panorama table, and which panoramas to (re)process."""

    out: Path
    overwrite: bool
    config: MapBuildConfig
    camera: PinholeCamera
    origin: GeoOrigin
    records: list[PanoramaRecord]
    positions: np.ndarray  # (P, 3) ENU
    tasks: list[tuple[int, PanoramaTask]]  # (panorama index, task)
    sources: list[str]
    existing: MapBundle | None = None
    kept_rows: _ViewRows | None = None
    kept_reports: dict[int, list[VirtualOffsetReport]] = field(default_factory=dict)
    vocabularies: Vocabularies | None = None
    added: int = 0
    rerendered: int = 0


def _task(
    root: Path,
    record: PanoramaRecord,
    position: np.ndarray,
    axis: StreetAxis,
    camera: PinholeCamera,
    config: MapBuildConfig,
) -> PanoramaTask:
    return PanoramaTask(
        pano_set_root=str(root.resolve()),
        record=record,
        position_enu=(float(position[0]), float(position[1]), float(position[2])),
        axis=axis,
        camera=camera,
        views=config.views,
        features=config.features,
        points=config.points,
        images=config.images,
    )


def _with_uncertainty(records: list[PanoramaRecord], config: MapBuildConfig) -> list[PanoramaRecord]:
    """Records with their pose uncertainty resolved (``config.pose_uncertainty``), as bundles keep them."""
    cfg = config.pose_uncertainty
    default = PROVIDER_UNCERTAINTY[cfg.provider]
    out = []
    for record in records:
        stated = pose_uncertainty(record, default)
        out.append(
            record.model_copy(
                update={
                    "position_sigma_m": stated.position_sigma_m
                    if cfg.position_sigma_m is None
                    else cfg.position_sigma_m,
                    "heading_sigma_deg": stated.heading_sigma_deg
                    if cfg.heading_sigma_deg is None
                    else cfg.heading_sigma_deg,
                }
            )
        )
    return out


def _refuse_existing(out: Path, overwrite: bool) -> None:
    check_output_writable(out, overwrite)


def build_map(
    pano_set_dir: str | Path,
    out_dir: str | Path,
    config: MapBuildConfig | None = None,
    camera: PinholeCamera | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    vocabulary_from: str | Path | None = None,
) -> BuildSummary:
    """Build the map bundle ``out_dir`` from the panorama set ``pano_set_dir`` (module docstring).

    ``camera``: the views' camera (its distortion is dropped; default ``config.views.camera``),
    normally the on-board camera's calibration. ``scheduler``: a Dask scheduler address (else a
    local cluster of ``workers`` processes, default ``config.parallel.workers`` or every core;
    one worker runs in this process). ``vocabulary_from``: reuse the vocabularies of that bundle
    instead of training new ones (maps that share words).
    """
    cfg = config if config is not None else MapBuildConfig()
    out = Path(out_dir)
    _refuse_existing(out, overwrite)
    pano_set = PanoramaSet.load(pano_set_dir)
    view_camera = (camera if camera is not None else cfg.views.camera.pinhole()).undistorted()
    origin = pano_set.origin
    positions = pano_set.positions_enu(origin)
    axes = street_axes(pano_set, positions, cfg.views.neighbour_radius_m)
    vocabularies = None
    if vocabulary_from is not None:
        vocabularies = MapBundle.open(vocabulary_from).vocabularies
        if tuple(vocabularies.by_bag) != cfg.bag_names():
            raise MapBuildError(
                f"{vocabulary_from}: its vocabularies are for bags {list(vocabularies.by_bag)}, "
                f"the features make {list(cfg.bag_names())}"
            )
    plan = _Plan(
        out=out,
        overwrite=overwrite,
        config=cfg,
        camera=view_camera,
        origin=origin,
        records=_with_uncertainty(list(pano_set.records), cfg),
        positions=positions,
        tasks=[
            (i, _task(pano_set.root, r, positions[i], axes[r.id], view_camera, cfg))
            for i, r in enumerate(pano_set.records)
        ],
        sources=[str(Path(pano_set_dir).resolve())],
        vocabularies=vocabularies,
        added=len(pano_set),
    )
    return _run(plan, scheduler, workers)


def _same_axis(a: StreetAxis, b: StreetAxis) -> bool:
    def same_gap(x: float | None, y: float | None) -> bool:
        return (x is None and y is None) or (x is not None and y is not None and abs(x - y) < 1e-6)

    return (
        bool(np.allclose(a.forward, b.forward, atol=1e-9))
        and bool(np.allclose(a.backward, b.backward, atol=1e-9))
        and same_gap(a.forward_gap_m, b.forward_gap_m)
        and same_gap(a.backward_gap_m, b.backward_gap_m)
    )


def _same_place(a: PanoramaRecord, b: PanoramaRecord) -> bool:
    fields = ("lat", "lon", "alt", "heading_deg", "pitch_deg", "roll_deg")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def add_panoramas(
    bundle_dir: str | Path,
    pano_set_dir: str | Path,
    out_dir: str | Path | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    overwrite: bool = False,
    verify: Verification = "full",
) -> BuildSummary:
    """Add the panoramas of ``pano_set_dir`` that ``bundle_dir`` lacks; write ``out_dir`` (default:
    replace ``bundle_dir``, atomically).

    Uses the bundle's build settings, camera, origin and vocabularies. Existing panoramas whose
    street axis (direction to their neighbours, hence their virtual views) the new ones change are
    re-processed when ``pano_set_dir`` holds them too; otherwise their views are kept as they are
    (logged). The IDF, co-similarity, topology and tiles are recomputed over all views.
    """
    bundle = MapBundle.open(bundle_dir, verify=verify)
    if bundle.feature_storage.descriptors != "raw" or bundle.image_camera != bundle.camera:
        raise MapBuildError(
            f"{bundle.path}: a compacted bundle (geoloc map compact) cannot be extended: add the "
            "panoramas to the bundle it was compacted from, then compact the result"
        )
    cfg = bundle.build_config
    out = Path(out_dir) if out_dir is not None else bundle.path
    in_place = out.resolve() == bundle.path.resolve()
    if not in_place:
        _refuse_existing(out, overwrite)
    new_set = PanoramaSet.load(pano_set_dir)
    old_records = bundle.panorama_records
    known = {r.id: i for i, r in enumerate(old_records)}
    for record in new_set.records:
        if record.id in known and not _same_place(record, old_records[known[record.id]]):
            raise MapBuildError(
                f"{pano_set_dir}: panorama {record.id!r} differs from the one in {bundle.path} "
                "(position or orientation); rebuild the map instead"
            )
    added = _with_uncertainty([r for r in new_set.records if r.id not in known], cfg)
    if not added:
        raise MapBuildError(f"{pano_set_dir}: every panorama of the set is already in {bundle.path}")
    new_positions = new_set.positions_enu(bundle.origin)
    added_positions = np.array([new_positions[new_set.index_of(r.id)] for r in added]).reshape(-1, 3)
    records = old_records + added
    positions = np.vstack([np.asarray(bundle.panorama_positions), added_positions])
    radius = cfg.views.neighbour_radius_m
    union_axes = street_axes(PanoramaSet(new_set.root, records, bundle.origin), positions, radius)
    old_axes = street_axes(
        PanoramaSet(new_set.root, old_records, bundle.origin), np.asarray(bundle.panorama_positions), radius
    )
    changed = [i for i, r in enumerate(old_records) if not _same_axis(old_axes[r.id], union_axes[r.id])]
    in_new_set = {r.id for r in new_set.records}
    rerender = [i for i in changed if old_records[i].id in in_new_set]
    if len(rerender) < len(changed):
        logger.warning(
            "%d existing panoramas next to the new ones would get other virtual views, but %s does not "
            "hold them: their views are kept as built",
            len(changed) - len(rerender),
            pano_set_dir,
        )
    for i in rerender:
        records[i] = _with_uncertainty([new_set[old_records[i].id]], cfg)[0]
    rerender_set = set(rerender)
    kept_views = np.flatnonzero(~np.isin(np.asarray(bundle.views.pano_index), list(rerender_set)))
    stored_reports = bundle.bundle.json(PANORAMA_VIRTUAL_OFFSETS)
    kept_reports = {
        i: [_offset_report(r) for r in stored_reports[rec.id]]
        for i, rec in enumerate(old_records)
        if i not in rerender_set
    }
    camera = bundle.camera
    # Re-processed panoramas keep their index; new ones follow the existing ones.
    to_process = [*rerender, *range(len(old_records), len(records))]
    tasks = [
        (i, _task(new_set.root, records[i], positions[i], union_axes[records[i].id], camera, cfg))
        for i in to_process
    ]
    logger.info(
        "adding %d panoramas to %s (%d existing ones re-processed, %d views kept)",
        len(added),
        bundle.path,
        len(rerender),
        len(kept_views),
    )
    sources = list(bundle.manifest.get("sources", {}).get("panorama_sets", []))
    new_source = str(Path(pano_set_dir).resolve())
    plan = _Plan(
        out=out,
        overwrite=True if in_place else overwrite,
        config=cfg,
        camera=camera,
        origin=bundle.origin,
        records=records,
        positions=positions,
        tasks=tasks,
        sources=[*sources, new_source] if new_source not in sources else sources,
        existing=bundle,
        kept_rows=_ViewRows.of_bundle(bundle, kept_views),
        kept_reports=kept_reports,
        vocabularies=bundle.vocabularies,
        added=len(added),
        rerendered=len(rerender),
    )
    return _run(plan, scheduler, workers)


# ------------------------------------------------------------------------------------ stages
@dataclass(frozen=True)
class _RunInfo:
    """Where the per-panorama work ran and what it cost (for the summary and the manifest)."""

    runner: str
    workers: int
    worker_seconds: dict[str, float]


def _run(plan: _Plan, scheduler: str | None, workers: int | None) -> BuildSummary:
    cfg = plan.config
    clock = _StageClock()
    worker_seconds: dict[str, float] = {}
    n_workers = workers if workers is not None else cfg.parallel.workers
    with StagingArea(plan.out) as staging:
        with open_runner(n_workers, scheduler) as runner:
            logger.info("map build: %d panoramas to process (%s)", len(plan.tasks), runner.description)
            in_flight = cfg.parallel.tasks_in_flight_per_worker * runner.n_workers
            samples = None if plan.vocabularies is not None else _new_samples(cfg)
            with clock.stage("panoramas"):
                rows, reports = _process_panoramas(runner, plan, staging, samples, worker_seconds, in_flight)
            vocabularies = plan.vocabularies
            if vocabularies is None:
                assert samples is not None
                with clock.stage("vocabulary"), _single_threaded_faiss():
                    vocabularies = _train_vocabularies(samples, cfg)
            with clock.stage("quantize"):
                _quantize(runner, staging, [slot for slot, _ in plan.tasks], vocabularies, in_flight)
            run = _RunInfo(runner.description, runner.n_workers, worker_seconds)
        if plan.kept_rows is not None:
            rows = _ViewRows.concatenate([plan.kept_rows, rows])
        summary = _write_bundle(
            plan, rows, {**plan.kept_reports, **reports}, vocabularies, staging, clock, run
        )
    logger.info(
        "map bundle %s: %d panoramas, %d views, %d features, %.1f MB in %.0f s",
        plan.out,
        summary.n_panoramas,
        summary.n_views,
        summary.n_features,
        summary.bundle_bytes / 1e6,
        sum(summary.timings_s.values()),
    )
    return summary


@contextlib.contextmanager
def _single_threaded_faiss() -> Iterator[None]:
    """faiss (OpenMP) on one thread in this process, as in the workers: on a busy machine OpenMP
    threads spin at every barrier while the others wait for a core (many times the CPU for the
    same vocabulary), and the vocabulary does not depend on the machine's core count."""
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(threads)


def _new_samples(cfg: MapBuildConfig) -> dict[str, KeyedSample]:
    configs = cfg.vocabulary.by_bag(cfg.bag_names())
    return {name: KeyedSample(configs[name].sample_size) for name in cfg.bag_names()}


def _process_panoramas(
    runner: TaskRunner,
    plan: _Plan,
    staging: StagingArea,
    samples: dict[str, KeyedSample] | None,
    worker_seconds: dict[str, float],
    in_flight: int,
) -> tuple[_ViewRows, dict[int, list[VirtualOffsetReport]]]:
    """Run :func:`process_panorama` on every task; stage the results; feed the descriptor sample."""
    slot_of_label = {f"panorama {task.record.id!r}": slot for slot, task in plan.tasks}
    labelled = ((f"panorama {task.record.id!r}", (task,)) for _, task in plan.tasks)
    parts: dict[int, _ViewRows] = {}
    reports: dict[int, list[VirtualOffsetReport]] = {}
    results = runner.imap_unordered(process_panorama, labelled, in_flight)
    for label, result in progress_bar(results, total=len(plan.tasks), desc="panoramas", unit="pano"):
        slot = slot_of_label[label]
        staging.write(slot, result)
        parts[slot] = _ViewRows.of_result(slot, result)
        reports[slot] = result.virtual_offsets
        for stage, seconds in result.timings_s.items():
            worker_seconds[stage] = worker_seconds.get(stage, 0.0) + seconds
        if samples is not None:
            kinds, descriptors = result.features["kind"], result.features["descriptors"]
            keys = panorama_sample_keys(plan.config.seed, result.pano_id, len(kinds))
            for name, sample in samples.items():
                chosen = kinds == feature_kind(name).code
                sample.add(keys[chosen], descriptors[chosen])
    if not parts:
        raise MapBuildError("no panorama to process")
    return _ViewRows.concatenate([parts[slot] for slot in sorted(parts)]), reports


def _train_vocabularies(samples: dict[str, KeyedSample], cfg: MapBuildConfig) -> Vocabularies:
    """One vocabulary per bag on its sample; fewer words than configured when the sample is small."""
    configs = cfg.vocabulary.by_bag(cfg.bag_names())
    trained = {}
    for name, sample in samples.items():
        rows = sample.sample()
        wanted = configs[name].n_words
        affordable = len(rows) // cfg.vocabulary.min_descriptors_per_word
        n_words = min(wanted, affordable)
        if n_words < 2:
            raise MapBuildError(
                f"vocabulary {name}: only {len(rows)} {name.upper()} descriptors in the whole map; "
                f"disable the bag (features.{name}_max_features: 0) or add panoramas"
            )
        if n_words < wanted:
            logger.warning(
                "vocabulary %s: %d words instead of %d (%d sampled descriptors, at least %d per word)",
                name,
                n_words,
                wanted,
                len(rows),
                cfg.vocabulary.min_descriptors_per_word,
            )
        logger.info(
            "training the %s vocabulary: %d words on %d of %d descriptors",
            name,
            n_words,
            len(rows),
            sample.seen,
        )
        config = configs[name].model_copy(update={"n_words": n_words})
        try:
            if cfg.vocabulary.training == "two_level":
                trained[name] = train_two_level(rows, config)
            else:
                trained[name] = Vocabulary.train(rows, config)
        except (VocabularyError, MapBuildError) as exc:
            raise MapBuildError(f"vocabulary {name}: {exc}") from None
    return Vocabularies(trained)


def _quantize(
    runner: TaskRunner, staging: StagingArea, slots: list[int], vocabularies: Vocabularies, in_flight: int
) -> None:
    """Words of every staged panorama's features, in parallel; written back to the staging area."""
    shared = runner.share(vocabularies)

    def tasks() -> Iterator[tuple[str, tuple[Any, ...]]]:
        for slot in slots:
            kinds, descriptors = staging.read_descriptors(slot)
            yield str(slot), (kinds, descriptors, shared)

    results = runner.imap_unordered(quantize_descriptors, tasks(), in_flight)
    for label, words in progress_bar(results, total=len(slots), desc="quantizing", unit="pano"):
        staging.write_words(int(label), words)


# ------------------------------------------------------------------------------------ writing
class _FeatureColumns:
    """The ``features/*.npy`` arrays of the bundle, filled view by view through memory maps."""

    def __init__(self, directory: Path, n_rows: int) -> None:
        self.columns = {
            name: np.lib.format.open_memmap(
                directory / f"{name}.npy", mode="w+", dtype=np.dtype(dtype), shape=(n_rows, *shape)
            )
            for name, (dtype, shape) in FEATURE_COLUMNS.items()
        }

    def put(self, start: int, values: dict[str, np.ndarray]) -> None:
        stop = start + len(values["kind"])
        for name, column in self.columns.items():
            column[start:stop] = values[name]

    def close(self) -> None:
        for column in self.columns.values():
            column.flush()
        self.columns.clear()


def _view_data(
    rows: _ViewRows, view: int, staging: StagingArea, existing: MapBundle | None
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Feature columns (FEATURE_COLUMNS) and JPEG bytes of one view of ``rows``."""
    slot, row = int(rows.slot[view]), int(rows.row[view])
    if slot == _EXISTING_SLOT:
        assert existing is not None
        features, points = existing.features(row)
        values = {name: value for name, value in features.to_arrays().items() if name != "image_size"}
        values["points_map"] = points
        values["words"] = existing.words(row)
        if not existing.has_images:
            return values, np.zeros(0, np.uint8)
        return values, np.frombuffer(existing.view_jpeg(row), np.uint8)
    staged = staging.load(slot)
    lo, hi = int(staged["feature_offsets"][row]), int(staged["feature_offsets"][row + 1])
    values = {name: staged[name][lo:hi] for name in FEATURE_COLUMNS}
    j0, j1 = int(staged["jpeg_offsets"][row]), int(staged["jpeg_offsets"][row + 1])
    return values, staged["jpeg"][j0:j1]


def _offset_report(stored: dict[str, Any]) -> VirtualOffsetReport:
    """A :class:`VirtualOffsetReport` read back from ``panoramas/virtual_offsets.json``."""
    return VirtualOffsetReport(**{**stored, "hole_ratios": tuple(stored["hole_ratios"])})


def _hole_table(
    records: list[PanoramaRecord], reports: dict[int, list[VirtualOffsetReport]]
) -> list[HoleRatioRow]:
    """The seed's null-pixel table over every panorama of the bundle."""
    return hole_ratio_table(PanoramaViews(r.id, offsets=reports.get(i, [])) for i, r in enumerate(records))


def _build_index(
    staging: Path, feature_offsets: np.ndarray, vocabularies: Vocabularies, cfg: MapBuildConfig
) -> TfIdfIndex:
    """The TF-IDF index of the views, streamed from the words just written to the bundle."""
    words = np.load(staging / "features" / "words.npy", mmap_mode="r")
    kinds = np.load(staging / "features" / "kind.npy", mmap_mode="r")
    bag_kinds = {name: feature_kind(name).code for name in vocabularies.by_bag}

    def view_words() -> Iterator[dict[str, np.ndarray]]:
        for start, stop in itertools.pairwise(feature_offsets):
            view_kinds, view_words = kinds[start:stop], words[start:stop]
            yield {name: np.asarray(view_words[view_kinds == kind]) for name, kind in bag_kinds.items()}

    return TfIdfIndex.build(vocabularies.bag_sizes, view_words(), cfg.index, n_views=len(feature_offsets) - 1)


def _topology(plan: _Plan, rows: _ViewRows) -> tuple[Topology, int]:
    """The view graph and the number of adjacent panorama pairs."""
    index_of = {r.id: i for i, r in enumerate(plan.records)}
    links = [[index_of[link] for link in r.links if link in index_of] for r in plan.records]
    pairs = adjacent_panorama_pairs(
        plan.positions, links, plan.config.topology.adjacency_m, plan.config.topology.use_links
    )
    return view_topology(rows.pano_index, rows.position, pairs, len(plan.records)), len(pairs)


def _view_arrays(rows: _ViewRows, tiles: TileTable) -> dict[str, np.ndarray]:
    """The ``views/*`` arrays of tile-sorted ``rows`` (dtypes of :data:`VIEW_ARRAYS`)."""
    values = {
        "pano_index": rows.pano_index,
        "local_index": rows.local_index,
        "kind": rows.kind,
        "offset_m": rows.offset_m,
        "yaw_deg": rows.yaw_deg,
        "pitch_deg": rows.pitch_deg,
        "T_map_optical": rows.T_map_optical,
        "position": rows.position,
        "hole_ratio": rows.hole_ratio,
        "tile": tiles.row_tiles(),
    }
    return {name: np.asarray(values[name], dtype=dtype) for name, (dtype, _) in VIEW_ARRAYS.items()}


@dataclass(frozen=True)
class _FeatureCounts:
    by_kind: np.ndarray  # (256,) features per FeatureKind value
    with_point: int  # features with a finite 3D point


def _write_features_and_images(
    writer: BundleWriter,
    rows: _ViewRows,
    staging: StagingArea,
    existing: MapBundle | None,
    store_images: bool,
) -> _FeatureCounts:
    """Stream every view's features, words, points (and JPEG) into the bundle, in row order."""
    feature_offsets = np.concatenate([[0], np.cumsum(rows.n_features)]).astype(np.int64)
    image_offsets = np.concatenate([[0], np.cumsum(rows.n_jpeg_bytes)]).astype(np.int64)
    writer.add_array(FEATURE_OFFSETS, feature_offsets)
    columns = _FeatureColumns(writer.directory("features"), int(feature_offsets[-1]))
    jpeg_out = None
    if store_images:
        writer.add_array(IMAGE_OFFSETS, image_offsets)
        writer.directory("images")
        jpeg_out = np.lib.format.open_memmap(
            writer.staging / f"{IMAGE_BYTES}.npy", mode="w+", dtype=np.uint8, shape=(int(image_offsets[-1]),)
        )
    by_kind = np.zeros(256, dtype=np.int64)
    with_point = 0
    for view in progress_bar(range(len(rows)), desc="assembling", unit="view"):
        values, jpeg = _view_data(rows, view, staging, existing)
        if len(values["kind"]) != rows.n_features[view] or (
            jpeg_out is not None and len(jpeg) != rows.n_jpeg_bytes[view]
        ):
            raise MapBuildError(f"view {view}: staged data disagree with its metadata")
        by_kind += np.bincount(values["kind"], minlength=256)
        with_point += int(np.count_nonzero(np.isfinite(values["points_map"][:, 0])))
        columns.put(int(feature_offsets[view]), values)
        if jpeg_out is not None:
            jpeg_out[image_offsets[view] : image_offsets[view + 1]] = jpeg
    columns.close()
    if jpeg_out is not None:
        jpeg_out.flush()
        del jpeg_out
    return _FeatureCounts(by_kind, with_point)


def _virtual_view_report(plan: _Plan, reports: dict[int, list[VirtualOffsetReport]]) -> dict[str, Any]:
    """What happened to the virtual views: counts and the seed's null-pixel table."""
    every = [r for rs in reports.values() for r in rs]
    rendered = sum(len(r.hole_ratios) for r in every)
    discarded = sum(r.discarded for r in every)
    logger.info(
        "virtual views: %d rendered, %d discarded above %.0f%% null pixels, %d kept",
        rendered,
        discarded,
        100 * plan.config.views.max_hole_ratio,
        rendered - discarded,
    )
    return {
        "rendered": rendered,
        "kept": rendered - discarded,
        "discarded": discarded,
        "max_hole_ratio": plan.config.views.max_hole_ratio,
        "offsets_skipped": {
            status: sum(r.status == status for r in every)
            for status in ("blocked", "beyond_neighbour", "no_depth")
        },
        "table": [
            {**dataclasses.asdict(row), "ratio_with_null_pixels": row.ratio_with_null_pixels}
            for row in _hole_table(plan.records, reports)
        ],
    }


def _write_bundle(
    plan: _Plan,
    rows: _ViewRows,
    reports: dict[int, list[VirtualOffsetReport]],
    vocabularies: Vocabularies,
    staging: StagingArea,
    clock: _StageClock,
    run: _RunInfo,
) -> BuildSummary:
    """Sort the views by tile and write the complete bundle (atomically)."""
    cfg = plan.config
    n_views, n_features = len(rows), int(rows.n_features.sum())
    if n_views == 0 or n_features == 0:
        raise MapBuildError(
            f"the map would be empty ({n_views} views, {n_features} features): check the panoramas and "
            "the feature settings"
        )
    bags = tuple(vocabularies.by_bag)
    weights = {name: w for name, w in cfg.query.weights.items() if name in bags}
    if not any(w > 0 for w in weights.values()):
        raise MapBuildError(
            f"query.weights {cfg.query.weights} give no positive weight to the bags {list(bags)}"
        )
    rows = rows.take(tile_sort_order(rows.position, cfg.tiles.tile_size_m, rows.pano_index, rows.local_index))
    tiles = TileTable.from_sorted_positions(rows.position, cfg.tiles.tile_size_m)
    store_images = cfg.images.store and (plan.existing is None or plan.existing.has_images)

    with BundleWriter(plan.out, overwrite=plan.overwrite) as writer:
        with clock.stage("assemble"):
            for name, array in _view_arrays(rows, tiles).items():
                writer.add_array(f"views/{name}", array)
            writer.add_array(TILE_KEYS, tiles.keys)
            writer.add_array(TILE_STARTS, tiles.starts)
            writer.add_json(PANORAMA_RECORDS, [r.to_json() for r in plan.records])
            writer.add_array(PANORAMA_POSITIONS, np.asarray(plan.positions, dtype=np.float64))
            writer.add_json(
                PANORAMA_VIRTUAL_OFFSETS,
                {
                    r.id: [dataclasses.asdict(o) for o in reports.get(i, [])]
                    for i, r in enumerate(plan.records)
                },
            )
            counted = _write_features_and_images(writer, rows, staging, plan.existing, store_images)
            vocabularies.write_into(writer.directory(VOCABULARY_DIR))
        with clock.stage("index"):
            feature_offsets = np.concatenate([[0], np.cumsum(rows.n_features)]).astype(np.int64)
            index = _build_index(writer.staging, feature_offsets, vocabularies, cfg)
            index.write_into(writer.directory(INDEX_DIR), INDEX_NAME)
        with clock.stage("topology"):
            topology, n_pairs = _topology(plan, rows)
            for key, array in topology.to_arrays().items():
                writer.add_array(f"{TOPOLOGY_PREFIX}/{key}", array)
        with clock.stage("cosimilarity"):
            mode = cfg.cosimilarity.mode
            if mode == "auto":
                mode = "all_pairs" if n_views <= cfg.cosimilarity.all_pairs_max_views else "edges"
            if mode == "all_pairs":
                cosimilarity = cosimilarity_topk(index, cfg.cosimilarity, weights)
            else:
                budget = cfg.cosimilarity.memory_budget_mb
                cosimilarity = cosimilarity_on_edges(index, topology, weights, budget)
            for key, array in cosimilarity_to_arrays(cosimilarity).items():
                writer.add_array(f"{COSIMILARITY_PREFIX}/{key}", array)

        counts: dict[str, Any] = {
            "panoramas": len(plan.records),
            "views": n_views,
            "rectified_views": int(np.count_nonzero(rows.kind == ViewKind.RECTIFIED)),
            "virtual_views": int(np.count_nonzero(rows.kind == ViewKind.VIRTUAL)),
            "features": n_features,
            "features_by_bag": {name: int(counted.by_kind[feature_kind(name).code]) for name in bags},
            "features_with_3d_point": counted.with_point,
        }
        virtual = _virtual_view_report(plan, reports)
        image_bytes = int(rows.n_jpeg_bytes.sum()) if store_images else 0
        metadata = {
            "content": MAP_CONTENT,
            "origin": plan.origin.to_dict(),
            "camera": plan.camera.to_dict("map_views"),
            "build_config": cfg.model_dump(mode="json"),
            "counts": counts,
            "vocabularies": {name: v.parameters() for name, v in vocabularies.by_bag.items()},
            "index": index.parameters(),
            "cosimilarity": {
                "mode": mode,
                "top_k": cfg.cosimilarity.top_k,
                "weights": weights,
                "entries": int(cosimilarity.nnz),
            },
            "topology": {
                "adjacency_m": cfg.topology.adjacency_m,
                "use_links": cfg.topology.use_links,
                "adjacent_panorama_pairs": n_pairs,
                "edges": len(topology.indices) // 2,
            },
            "tiles": {"tile_size_m": cfg.tiles.tile_size_m, "n_tiles": tiles.n_tiles},
            "virtual_views": virtual,
            "images": {
                "stored": store_images,
                "format": "jpeg" if store_images else None,
                "jpeg_quality": cfg.images.jpeg_quality if store_images else None,
                "bytes": image_bytes,
            },
            "sources": {"panorama_sets": plan.sources},
            "build": {
                "runner": run.runner,
                "workers": run.workers,
                "timings_s": {k: round(v, 3) for k, v in clock.seconds.items()},
                "worker_seconds": {k: round(v, 3) for k, v in run.worker_seconds.items()},
            },
        }
        with clock.stage("commit"):
            writer.commit(metadata)
    return BuildSummary(
        bundle=plan.out,
        n_panoramas=len(plan.records),
        n_views=n_views,
        n_rectified_views=counts["rectified_views"],
        n_virtual_views=counts["virtual_views"],
        virtual_views_rendered=virtual["rendered"],
        virtual_views_discarded=virtual["discarded"],
        n_features=n_features,
        n_tiles=tiles.n_tiles,
        vocabulary_words=vocabularies.bag_sizes,
        bundle_bytes=Bundle.open(plan.out, verify="none").total_bytes,
        workers=run.workers,
        runner=run.runner,
        timings_s=dict(clock.seconds),
        worker_seconds=dict(run.worker_seconds),
        hole_ratio_table=virtual["table"],
        processed_panoramas=len(plan.tasks),
        added_panoramas=plan.added,
        rerendered_panoramas=plan.rerendered,
    )
