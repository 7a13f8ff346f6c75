"""``geoloc replay --bag BAG``: publish a bag's topics with /clock (no ``ros2 bag`` needed)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from geoloc_ros.cli.common import bag_option, map_option


@click.command("replay")
@bag_option("its topics are published", required=True)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.0),
    default=1.0,
    show_default=True,
    help="Playback speed (0 = as fast as possible).",
)
@click.option("--loop", is_flag=True, help="Start over at the end (stamps jump back).")
@click.option("--no-clock", is_flag=True, help="Do not publish /clock.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--topic", "topics", multiple=True, help="Topic to replay (repeatable; default: all).")
@map_option("also publish the RTK ground truth as /geoloc/groundtruth/path (for RViz)")
def replay_command(
    bag: Path,
    rate: float,
    loop: bool,
    no_clock: bool,
    as_json: bool,
    topics: tuple[str, ...],
    map_dir: Path | None,
) -> None:
    """Replay BAG's topics, paced by their recorded times, with /clock for use_sim_time nodes and RViz.

    Discovery stays on this host unless ROS_AUTOMATIC_DISCOVERY_RANGE is set explicitly.
    """
    from geoloc_ros.nodes.isolation import enforce_loopback

    enforce_loopback(force=False)
    from geoloc_ros.nodes.replay import replay_bag

    published = replay_bag(
        bag, rate=rate, loop=loop, publish_clock=not no_clock, topics=topics, map_bundle=map_dir
    )
    if published is not None:
        summary = {"bag": str(bag), "messages": published}
        click.echo(json.dumps(summary) if as_json else f"replayed {published} messages")
