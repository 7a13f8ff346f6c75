"""``geoloc demo``: simulate the demo town, build its map, localize its drive with every source, report.

Each step reuses its output when it is already there (a second run only re-evaluates), so the demo is
also a quick way to try a change end to end.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import click

from geoloc_ros.cli.common import posenet_option

logger = logging.getLogger(__name__)

SHIPPED_MODEL = "models/posenet_demo.onnx"
# The shipped PoseNet was trained on this town; any other scenario or seed gets a short training instead.
SHIPPED_MODEL_TOWN = ("demo", 1)


def _step(title: str) -> float:
    click.secho(f"\n== {title}", bold=True)
    return time.perf_counter()


def _simulated(out: Path, scenario: str, seed: int) -> bool:
    summary = out / "summary.json"
    if not summary.is_file():
        return False
    data = json.loads(summary.read_text(encoding="utf-8"))
    return data.get("scenario") == scenario and data.get("seed") == seed


def _short_training(bundle_dir: Path, run_dir: Path, model_path: Path, minutes: float) -> Path:
    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.posenet.export import export_onnx
    from geoloc_ros.posenet.train import train

    bundle = MapBundle.open(bundle_dir)
    result = train(bundle.view_source(), run_dir, time_budget_s=minutes * 60.0, overwrite=True)
    return export_onnx(result.run_dir, model_path, overwrite=True).path


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("demo_output"),
    show_default=True,
    help="Working directory (simulation, map, report).",
)
@click.option("--scenario", default="demo", show_default=True, help="Simulator preset or scenario YAML.")
@click.option("--seed", type=int, default=1, show_default=True, help="Simulator seed (same seed, same town).")
@posenet_option("default: the shipped demo model, else a short training")
@click.option(
    "--train-minutes",
    type=click.FloatRange(min=1.0),
    default=10.0,
    show_default=True,
    help="Time budget of the PoseNet training when no model fits the town.",
)
@click.option("--no-posenet", is_flag=True, help="Skip PoseNet (BoVW, fusion and GPS only).")
@click.option("--fresh", is_flag=True, help="Redo every step instead of reusing earlier outputs.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the report's figures as JSON instead of the table."
)
def demo_command(
    out: Path,
    scenario: str,
    seed: int,
    posenet: Path | None,
    train_minutes: float,
    no_posenet: bool,
    fresh: bool,
    as_json: bool,
) -> None:
    """The end-to-end demo: simulate -> build the map -> PoseNet -> evaluate -> seed-style table."""
    from geoloc_ros.mapping.build import build_map
    from geoloc_ros.mapping.map import MapBundle
    from geoloc_ros.pipelines.evaluate_report import evaluate_to_report
    from geoloc_ros.resources import share_file
    from geoloc_ros.sim.generate import generate
    from geoloc_ros.sim.scenario import load_scenario

    started = time.perf_counter()
    sim_dir, map_dir, report_dir = out / "sim", out / "map", out / "report"
    out.mkdir(parents=True, exist_ok=True)

    t = _step(f"1/4 simulate the '{scenario}' town and its drive (seed {seed})")
    scenario_model = load_scenario(scenario)
    if fresh or not _simulated(sim_dir, scenario_model.name, seed):
        generate(scenario_model, sim_dir, seed=seed, overwrite=True)
    else:
        click.echo(f"reusing {sim_dir}")
    click.echo(f"   {time.perf_counter() - t:.0f} s")

    t = _step("2/4 build the map bundle (rectified + virtual views, SIFT/MSER bags of words)")
    if fresh or not (map_dir / "manifest.json").is_file():
        build_map(sim_dir / "panoramas", map_dir, overwrite=True)
    else:
        click.echo(f"reusing {map_dir}")
    bundle = MapBundle.open(map_dir, verify="sizes")
    click.echo(f"   {bundle.n_panoramas} panoramas, {bundle.n_views} views; {time.perf_counter() - t:.0f} s")

    t = _step("3/4 PoseNet model")
    model: Path | None = None
    if not no_posenet:
        shipped = share_file(SHIPPED_MODEL)
        if posenet is not None:
            model = posenet
        elif shipped is not None and (scenario_model.name, seed) == SHIPPED_MODEL_TOWN:
            model = shipped
            click.echo(f"using the shipped model {shipped} (trained on this town)")
        else:
            click.echo(f"no model for this town: training one for {train_minutes:.0f} minutes")
            model = _short_training(map_dir, out / "posenet_run", out / "posenet.onnx", train_minutes)
    click.echo(f"   {time.perf_counter() - t:.0f} s")

    t = _step("4/4 localize the drive with every source and evaluate against RTK ground truth")
    table = evaluate_to_report(sim_dir / "drive", map_dir, model, report_dir, overwrite=True)
    click.echo(f"   {time.perf_counter() - t:.0f} s\n")
    if as_json:
        click.echo((report_dir / "metrics.json").read_text(encoding="utf-8"), nl=False)
        return
    click.echo(table)
    click.echo(f"report: {report_dir / 'report.md'} (figures in {report_dir / 'figures'})")
    click.echo(f"demo finished in {(time.perf_counter() - started) / 60:.1f} min")
