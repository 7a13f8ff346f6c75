"""``geoloc evaluate``: every source on a drive bag vs RTK ground truth: a seed-style table and a report."""

from __future__ import annotations

from pathlib import Path

import click

from geoloc_ros.cli.common import bag_option, map_option, output_options, posenet_option


def _compare(report_a: Path, report_b: Path, out: Path | None, overwrite: bool, as_json: bool) -> None:
    import json

    from geoloc_ros.evaluation.compare import compare_reports, format_comparison_markdown
    from geoloc_ros.io.atomic import atomic_directory

    comparison = compare_reports(report_a, report_b)
    markdown = format_comparison_markdown(comparison)
    document = json.dumps(comparison.as_dict(), indent=2, allow_nan=False)
    if out is not None:
        with atomic_directory(out, overwrite=overwrite) as tmp:
            (tmp / "compare.md").write_text(markdown, encoding="utf-8")
            (tmp / "compare.json").write_text(document + "\n", encoding="utf-8")
    click.echo(document if as_json else markdown)


@click.command("evaluate")
@bag_option("localized by every source and judged against its RTK")
@map_option()
@posenet_option("without it, no PoseNet sources")
@output_options(
    "Report directory (with --compare: where to write compare.md and compare.json).",
    name="out",
    required=False,
    inputs=("bag", "map_dir", "posenet", "estimates_path", "compare", "panorama_truth"),
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="YAML of geoloc_ros.pipelines.evaluate_drive.EvaluateConfig (topics, localizer, fusion).",
)
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Only the first N frames.")
@click.option(
    "--estimates",
    "estimates_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Evaluate these estimates (estimates.jsonl of geoloc localize or geoloc stack --record) "
    "instead of running the localizers.",
)
@click.option(
    "--compare",
    "compare",
    nargs=2,
    type=click.Path(exists=True, path_type=Path),
    default=None,
    metavar="REPORT_A REPORT_B",
    help="Instead of evaluating: compare two reports figure by figure (B - A per source).",
)
@click.option(
    "--panorama-truth",
    type=click.Path(exists=True, path_type=Path),
    default=None,
    help="Simulator's panoramas_truth.jsonl (default: found beside a simulated drive): reports the "
    "map's own panorama pose error.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON instead of the table.")
def evaluate_command(
    bag: Path | None,
    map_dir: Path | None,
    posenet: Path | None,
    out: Path | None,
    config_path: Path | None,
    max_frames: int | None,
    estimates_path: Path | None,
    compare: tuple[Path, Path] | None,
    panorama_truth: Path | None,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Localize BAG with every source (BoVW, PoseNet, temporal PoseNet, fusion, consumer GPS) and evaluate
    them against its RTK ground truth: a seed-style table on the terminal and a report in OUT.

    With --estimates FILE, evaluate recorded estimates (a live run recorded by geoloc stack --record,
    or geoloc localize's output) instead of running the localizers. With --compare REPORT_A
    REPORT_B, compare two reports (e.g. before and after a change)."""
    if compare:
        given = (bag, map_dir, posenet, max_frames, estimates_path)
        if any(value is not None for value in given):
            raise click.UsageError(
                "--compare takes two reports; it cannot be combined with --bag/--map/--posenet/--estimates"
            )
        _compare(compare[0], compare[1], out, overwrite, as_json)
        return
    missing = [name for name, value in (("--bag", bag), ("--map", map_dir), ("--out", out)) if value is None]
    if missing:
        raise click.UsageError(f"missing {', '.join(missing)} (or use --compare REPORT_A REPORT_B)")
    assert bag is not None and map_dir is not None and out is not None
    from geoloc_ros.pipelines.evaluate_report import evaluate_estimates_to_report, evaluate_to_report

    if estimates_path is not None:
        if posenet is not None or max_frames is not None:
            raise click.UsageError("--estimates evaluates recorded poses: drop --posenet and --max-frames")
        table = evaluate_estimates_to_report(
            bag, map_dir, estimates_path, out, config_path, overwrite, panorama_truth
        )
    else:
        table = evaluate_to_report(
            bag, map_dir, posenet, out, config_path, max_frames, overwrite, panorama_truth
        )
    if as_json:
        click.echo((out / "metrics.json").read_text(encoding="utf-8"), nl=False)
        return
    click.echo(table)
    click.echo(f"\nreport: {out / 'report.md'}")
