"""``geoloc map``: build, extend and inspect map bundles."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from geoloc_ros.cli.common import bag_option, json_option, output_options, renamed_option

if TYPE_CHECKING:
    from geoloc_ros.mapping.build import BuildSummary


@click.group("map")
def map_group() -> None:
    """Build, extend and inspect map bundles."""


def _hole_table_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The seed's null-pixel table of virtual views, one line per offset."""
    if not rows:
        return ["  (no virtual views)"]
    lines = [
        f"  {'offset':>8} {'positions':>9} {'invalid':>7} {'skipped':>7} {'views':>6} "
        f"{'with null px':>12} {'mean null':>9} {'discarded':>9}"
    ]
    for row in rows:
        lines.append(
            f"  {row['offset_m']:>+7.1f}m {row['positions']:>9d} {row['invalid_positions']:>7d} "
            f"{row['skipped_positions']:>7d} {row['views']:>6d} "
            f"{100 * row['ratio_with_null_pixels']:>11.1f}% {100 * row['mean_hole_ratio']:>8.2f}% "
            f"{row['discarded']:>9d}"
        )
    return lines


def _summary_text(summary: BuildSummary) -> str:
    words = ", ".join(f"{name} {n}" for name, n in summary.vocabulary_words.items())
    stages = ", ".join(f"{name} {seconds:.1f}" for name, seconds in summary.timings_s.items())
    lines = [
        f"wrote {summary.bundle}: {summary.n_panoramas} panoramas, {summary.n_views} views "
        f"({summary.n_rectified_views} rectified, {summary.n_virtual_views} virtual), "
        f"{summary.n_features} features, {summary.n_tiles} tiles",
        f"processed {summary.processed_panoramas} panoramas on {summary.runner} ({summary.workers} workers)",
        f"virtual views: {summary.virtual_views_rendered} rendered, "
        f"{summary.virtual_views_discarded} discarded",
        *_hole_table_lines(summary.hole_ratio_table),
        f"vocabulary words: {words}",
        f"size: {summary.bundle_bytes / 1e6:.1f} MB ({summary.bytes_per_view / 1e3:.1f} kB per view)",
        f"time (s): {stages}",
    ]
    if summary.rerendered_panoramas:
        lines.insert(
            2, f"re-processed {summary.rerendered_panoramas} existing panoramas next to the new ones"
        )
    return "\n".join(lines)


def _emit(summary: BuildSummary, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(_summary_text(summary))


_scheduler_option = click.option(
    "--scheduler",
    metavar="ADDR",
    help="Dask scheduler address (e.g. tcp://10.0.0.5:8786); workers must see the panorama set at the "
    "same path. Default: a local cluster.",
)
_workers_option = click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Local worker processes (default: the config's, else every core; 1 runs in this process).",
)


@map_group.command("build")
@click.argument("pano_set", type=click.Path(exists=True, file_okay=False, path_type=Path))
@output_options("Bundle to write.", inputs=("pano_set", "vocabulary_from"))
@click.option(
    "--camera",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="On-board camera calibration (ROS camera YAML): the views get its intrinsics and size.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Build settings (YAML, MapBuildConfig); defaults are the benchmark's.",
)
@_scheduler_option
@_workers_option
@click.option(
    "--vocabulary-from",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Reuse the vocabularies of this bundle instead of training new ones.",
)
@click.option(
    "--pose-uncertainty",
    "provider",
    type=click.Choice(["exact", "streetview", "survey"]),
    help="Default pose uncertainty of panoramas that state none (documented per provider).",
)
@click.option(
    "--pose-sigma",
    nargs=2,
    type=float,
    metavar="METRES DEGREES",
    help="Map-wide override of every panorama's position (per axis) and heading standard deviations.",
)
@json_option
def build_command(
    pano_set: Path,
    out_dir: Path,
    camera: Path | None,
    config_path: Path | None,
    scheduler: str | None,
    workers: int | None,
    vocabulary_from: Path | None,
    provider: str | None,
    pose_sigma: tuple[float, float] | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Build a map bundle from the panorama set PANO_SET."""
    from geoloc_ros.camera.pinhole import PinholeCamera
    from geoloc_ros.config import validate_mapping
    from geoloc_ros.mapping.build import build_map, load_build_config
    from geoloc_ros.mapping.config import MapBuildConfig

    config = load_build_config(config_path) if config_path is not None else None
    if provider is not None or pose_sigma:
        base = (config or MapBuildConfig()).model_dump(mode="json")
        update = dict(base["pose_uncertainty"])
        if provider is not None:
            update["provider"] = provider
        if pose_sigma:
            update["position_sigma_m"], update["heading_sigma_deg"] = pose_sigma
        config = validate_mapping(MapBuildConfig, {**base, "pose_uncertainty": update}, "--pose-sigma")
    summary = build_map(
        pano_set,
        out_dir,
        config=config,
        camera=PinholeCamera.load(camera) if camera is not None else None,
        scheduler=scheduler,
        workers=workers,
        overwrite=overwrite,
        vocabulary_from=vocabulary_from,
    )
    _emit(summary, as_json)


@map_group.command("add")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("pano_set", type=click.Path(exists=True, file_okay=False, path_type=Path))
@output_options(
    "Write the extended bundle here (default: replace BUNDLE, atomically).",
    required=False,
    inputs=("pano_set",),  # replacing BUNDLE is what this command does without --out
)
@_scheduler_option
@_workers_option
@json_option
def add_command(
    bundle: Path,
    pano_set: Path,
    out_dir: Path | None,
    scheduler: str | None,
    workers: int | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Add the panoramas of PANO_SET that BUNDLE lacks (same vocabularies, no retraining)."""
    from geoloc_ros.mapping.build import add_panoramas

    summary = add_panoramas(
        bundle, pano_set, out_dir, scheduler=scheduler, workers=workers, overwrite=overwrite
    )
    _emit(summary, as_json)


def _info_text(info: dict[str, Any], verify: str) -> str:
    counts = info.get("counts") or {}
    camera = info["camera"]
    origin = info.get("origin") or {}
    tiles = info.get("tiles") or {}
    cosim = info.get("cosimilarity") or {}
    topology = info.get("topology") or {}
    images = info.get("images") or {}
    virtual = info.get("virtual_views") or {}
    views = counts.get("views", 0)
    by_bag = counts.get("features_by_bag", {})
    words = ", ".join(
        f"{name} {n} words ({by_bag.get(name, 0)} features)" for name, n in info["vocabularies"].items()
    )
    checksums = {"full": "verified", "sizes": "sizes checked", "none": "not checked"}[verify]
    lines = [
        f"map bundle {info['path']} (format {info['format_version']}, {info.get('producer')}, "
        f"created {info.get('created_at')})",
        f"origin: lat {origin.get('lat')}, lon {origin.get('lon')}, alt {origin.get('alt')} m",
        f"camera: {camera['width']}x{camera['height']}, fx {camera['fx']:.2f}, fy {camera['fy']:.2f}, "
        f"cx {camera['cx']:.2f}, cy {camera['cy']:.2f} (hfov {camera['hfov_deg']:.1f} deg)",
        f"panoramas: {counts.get('panoramas')}; views: {views} ({counts.get('rectified_views')} rectified, "
        f"{counts.get('virtual_views')} virtual); features: {counts.get('features')} "
        f"({counts.get('features_with_3d_point')} with a 3D point)",
        f"vocabularies: {words}",
        f"tiles: {tiles.get('n_tiles')} of {tiles.get('tile_size_m')} m",
        f"co-similarity: {cosim.get('mode')}, top {cosim.get('top_k')} per view, "
        f"{cosim.get('entries')} entries",
        f"topology: {topology.get('edges')} edges, {topology.get('adjacent_panorama_pairs')} adjacent "
        f"panorama pairs (adjacency {topology.get('adjacency_m')} m)",
        (
            f"images: {images.get('format')} quality {images.get('jpeg_quality')}, "
            f"{images.get('bytes', 0) / 1e6:.1f} MB"
            + (f", {images['width']}x{images['height']} thumbnails" if "width" in images else "")
            if images.get("stored")
            else "images: not stored"
        ),
        _storage_line(info.get("feature_storage") or {}),
        f"size: {info['bytes'] / 1e6:.1f} MB ({info['bytes'] / max(views, 1) / 1e3:.1f} kB per view)",
        f"virtual views: {virtual.get('rendered')} rendered, {virtual.get('discarded')} discarded above "
        f"{100 * float(virtual.get('max_hole_ratio', 0.0)):.0f}% null pixels, {virtual.get('kept')} kept",
        *_hole_table_lines(list(virtual.get("table", []))),
        *_refinement_lines(info),
        f"checksums: {checksums}",
    ]
    return "\n".join(lines)


def _storage_line(storage: dict[str, Any]) -> str:
    """How the features are stored (raw, or compacted by ``geoloc map compact``)."""
    descriptors = (
        f"product-quantised, {storage.get('pq_bytes')} bytes each"
        if storage.get("descriptors") == "pq"
        else "raw, 128 bytes each"
    )
    half = storage.get("float16") or []
    return f"feature storage: descriptors {descriptors}" + (f"; float16 {', '.join(half)}" if half else "")


def _refinement_lines(info: dict[str, Any]) -> list[str]:
    refinement = info.get("refinement")
    if not refinement:
        return [f"map version {info.get('map_version', 1)}: panorama poses as stated by the metadata"]
    return [
        f"map version {info.get('map_version')}: panorama poses refined from "
        f"{refinement.get('refined_from')} "
        f"({refinement.get('pairs')} panorama pairs, {refinement.get('point_pairs')} point pairs, "
        f"{refinement.get('anchors')} survey anchors)",
        f"  corrections: median {refinement.get('correction_median_m')} m / "
        f"{refinement.get('correction_median_deg')}°, max {refinement.get('correction_max_m')} m / "
        f"{refinement.get('correction_max_deg')}°",
        f"  refined pose sigma: median {refinement.get('sigma_median_m')} m / "
        f"{refinement.get('sigma_median_deg')}°, max {refinement.get('sigma_max_m')} m / "
        f"{refinement.get('sigma_max_deg')}°",
        f"  pairs matched {refinement.get('pairs_matched')}, reused from an earlier refinement "
        f"{refinement.get('pairs_reused')}; per panorama: refinement/corrections.json",
    ]


@map_group.command("refine")
@renamed_option("--drive", "--bag", "bag", multiple=True, type=click.Path(exists=True, path_type=Path))
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@output_options("Refined bundle to write (the input is never modified).", inputs=("bundle", "bag", "reuse"))
@bag_option("a survey drive with RTK, which anchors the panoramas absolutely (repeatable)", multiple=True)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Refinement settings (YAML, geoloc_ros.pipelines.refine_map.RefineConfig).",
)
@click.option(
    "--reuse",
    "reuse",
    multiple=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Earlier refined bundle (repeatable), e.g. before panoramas were added: its panorama pairs "
    "are not matched again.",
)
@json_option
def refine_command(
    bundle: Path,
    out_dir: Path,
    bag: tuple[Path, ...],
    config_path: Path | None,
    reuse: tuple[Path, ...],
    overwrite: bool,
    as_json: bool,
) -> None:
    """Correct the panorama poses of BUNDLE from cross-panorama matches (and survey drives: --bag) into
    OUT."""
    from geoloc_ros.config import load_yaml
    from geoloc_ros.pipelines.refine_map import RefineConfig, refine_bundle

    config = load_yaml(config_path, RefineConfig) if config_path is not None else None
    summary = refine_bundle(bundle, out_dir, list(bag), config, overwrite=overwrite, reuse=list(reuse))
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        click.echo(
            f"refined {summary['panoramas']} panoramas into {out_dir}: {summary['pairs']} pairs "
            f"({summary['pairs_matched']} matched, {summary['pairs_reused']} reused), "
            f"{summary['anchors']} anchors; corrections median {summary['correction_median_m']} m / "
            f"{summary['correction_median_deg']}°, max {summary['correction_max_m']} m / "
            f"{summary['correction_max_deg']}°"
        )


@map_group.command("compact")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@output_options("Compact bundle to write (the input is never modified).", inputs=("bundle",))
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Compaction settings (YAML, geoloc_ros.mapping.compact.CompactConfig).",
)
@click.option(
    "--pq-bytes",
    type=click.IntRange(1, 128),
    help="Bytes per product-quantised descriptor (divides 128; default 64).",
)
@click.option(
    "--images",
    type=click.Choice(["keep", "thumbnail", "drop"]),
    help="View images: keep, thumbnails (default) or drop.",
)
@json_option
def compact_command(
    bundle: Path,
    out_dir: Path,
    config_path: Path | None,
    pq_bytes: int | None,
    images: str | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Write a compact copy of BUNDLE into OUT: descriptors product-quantised, thumbnails."""
    from geoloc_ros.config import load_yaml, validate_mapping
    from geoloc_ros.mapping.compact import CompactConfig, compact_bundle

    config = load_yaml(config_path, CompactConfig) if config_path is not None else CompactConfig()
    updates: dict[str, Any] = {}
    if pq_bytes is not None:
        updates["pq_bytes"] = pq_bytes
    if images is not None:
        updates["images"] = images
    config = validate_mapping(CompactConfig, {**config.model_dump(), **updates}, "geoloc map compact")
    summary = compact_bundle(bundle, out_dir, config, overwrite=overwrite)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2))
    else:
        click.echo(
            f"compacted {bundle} into {out_dir}: {summary.bytes_per_view_before / 1e3:.1f} kB -> "
            f"{summary.bytes_per_view_after / 1e3:.1f} kB per view ({summary.n_views} views)"
        )


@map_group.command("info")
@click.argument("bundle", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--verify",
    type=click.Choice(["full", "sizes", "none"]),
    default="full",
    show_default=True,
    help="full: check every file's SHA-256; sizes: only presence and sizes.",
)
@json_option
def info_command(bundle: Path, verify: str, as_json: bool) -> None:
    """Describe (and verify) the map bundle BUNDLE."""
    from geoloc_ros.mapping.map import MapBundle

    opened = MapBundle.open(bundle, verify=verify)  # type: ignore[arg-type]  # click.Choice checked it
    info = opened.info()
    if as_json:
        click.echo(json.dumps({**info, "verified": verify}, indent=2))
    else:
        click.echo(_info_text(info, verify))
