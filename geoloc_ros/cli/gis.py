"""``geoloc gis``: GIS data sources (Street View downloads -> panorama set)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from geoloc_ros.cli.common import echo_summary, json_option, output_options

if TYPE_CHECKING:
    from geoloc_ros.geo.enu import GeoOrigin


@click.group("gis")
def gis_group() -> None:
    """Import GIS panorama data."""


def _parse_origin(text: str | None) -> GeoOrigin | None:
    from geoloc_ros.geo.enu import GeoOrigin

    if text is None:
        return None
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise click.BadParameter(
            f"expected 'lat,lon[,alt]' in degrees/metres, got {text!r}", param_hint="--origin"
        ) from None
    if len(values) not in (2, 3):
        raise click.BadParameter(
            f"expected 'lat,lon[,alt]', got {len(values)} numbers", param_hint="--origin"
        )
    return GeoOrigin(*values)


@gis_group.command("import-streetview")
@click.argument("source_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@output_options("Panorama set to write (panoramas.jsonl + images + depth).", inputs=("source_dir",))
@click.option("--origin", help="Map origin 'lat,lon[,alt]' written to origin.json (default: none).")
@click.option(
    "--apply-tilt",
    is_flag=True,
    help="Turn tilt_yaw_deg/tilt_pitch_deg into pitch/roll (default: treat panoramas as levelled).",
)
@json_option
def import_streetview_command(
    source_dir: Path, out_dir: Path, origin: str | None, apply_tilt: bool, overwrite: bool, as_json: bool
) -> None:
    """Build a panorama set from SOURCE_DIR: Street View metadata (*.xml / *.json, with depth_map)
    and the panoramas beside them (<pano_id>.jpg or pano_<pano_id>.jpg)."""
    from geoloc_ros.gis.streetview import import_streetview

    count = import_streetview(
        source_dir, out_dir, origin=_parse_origin(origin), overwrite=overwrite, apply_tilt=apply_tilt
    )
    summary = {"panoramas": count, "out": str(out_dir)}
    echo_summary(summary, f"imported {count} panoramas into {out_dir}", as_json)
