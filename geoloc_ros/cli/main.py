"""The ``geoloc`` command line: one entry point, subcommands loaded lazily.

Each subcommand lives in its own module of :mod:`geoloc_ros.cli` and only parses arguments and calls
the core. Loading is lazy so ``geoloc --help`` stays fast and torch is imported only by the
commands that train or export.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

import click

from geoloc_ros import __version__
from geoloc_ros.errors import GeolocError

# name -> "module:attribute" of a click command or group.
SUBCOMMANDS: dict[str, str] = {
    "sim": "geoloc_ros.cli.sim:sim_command",
    "gis": "geoloc_ros.cli.gis:gis_group",
    "map": "geoloc_ros.cli.map:map_group",
    "localize": "geoloc_ros.cli.localize:localize_command",
    "posenet": "geoloc_ros.cli.posenet:posenet_group",
    "evaluate": "geoloc_ros.cli.evaluate:evaluate_command",
    "replay": "geoloc_ros.cli.replay:replay_command",
    "stack": "geoloc_ros.cli.stack:stack_command",
    "demo": "geoloc_ros.cli.demo:demo_command",
    "doctor": "geoloc_ros.cli.doctor:doctor_command",
    "completion": "geoloc_ros.cli.doctor:completion_command",
}

SHORT_HELP = {
    "sim": "Generate a synthetic town: panorama set + drive rosbag2.",
    "gis": "Import GIS panorama data (Street View).",
    "map": "Build and inspect map bundles.",
    "localize": "Localize a drive bag offline with BoVW + RANSAC.",
    "posenet": "Train, export and run the PoseNet regressor.",
    "evaluate": "Evaluate every source against RTK ground truth.",
    "replay": "Replay a bag with /clock for live nodes and RViz.",
    "stack": "Run all nodes in one process (no ros2 launch needed).",
    "demo": "Simulate, build, localize, evaluate: the one-command demo.",
    "doctor": "Check the installation (ROS, onnxruntime, GPU, DDS) and say what is missing.",
    "completion": "Print the shell completion script (bash, zsh, fish).",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None
            raise
        command: click.Command = getattr(module, attr)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Describe subcommands without importing them (keeps --help instant).
        rows = [(name, SHORT_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
# Loggers that are noise at INFO for users (kept for -v): faiss (which SIMD build it tried) and Dask
# (about 35 lines as a local cluster starts and stops).
NOISY_LOGGERS = ("faiss", "distributed")
# distributed sets its own logger levels when it is imported (from its config); this setting, read at
# that import and by the worker processes it starts, keeps them at WARNING.
DASK_LOG_LEVEL_ENV = "DASK_DISTRIBUTED__LOGGING__DISTRIBUTED"


def configure_logging(verbose: int, quiet: bool) -> None:
    """One log format for every subcommand; -v debug, -q warnings and errors only."""
    level = logging.WARNING if quiet else (logging.DEBUG if verbose else logging.INFO)
    logging.basicConfig(level=level, format=LOG_FORMAT)
    if verbose:
        return
    os.environ.setdefault(DASK_LOG_LEVEL_ENV, "warning")
    if "dask" in sys.modules:  # imported already (a subcommand module loaded before this callback)
        import dask

        dask.config.set({"distributed.logging.distributed": "warning"})
    for name in NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="geoloc")
@click.option("-v", "--verbose", count=True, help="More log output (-v debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def cli(verbose: int, quiet: bool) -> None:
    """geoloc: visual ego-localization against geo-tagged panoramas."""
    configure_logging(verbose, quiet)


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="geoloc", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except GeolocError as exc:
        click.echo(f"geoloc: error: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
