"""``geoloc doctor`` (check the installation) and ``geoloc completion`` (shell completion script)."""

from __future__ import annotations

import sys

import click

from geoloc_ros.cli.common import echo_summary, json_option

COMPLETION_ENV = "_GEOLOC_COMPLETE"


@click.command("doctor")
@json_option
def doctor_command(as_json: bool) -> None:
    """Check this installation: core libraries, rclpy, message packages, onnxruntime providers, GPU,
    ament prefix, DDS configuration and discovery range. Exits with 1 when something is missing."""
    from geoloc_ros.doctor import MISSING, report_dict, report_text, run_checks

    checks = run_checks()
    echo_summary(report_dict(checks), report_text(checks), as_json)
    if any(c.status == MISSING for c in checks):
        sys.exit(1)


@click.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]), default="bash")
def completion_command(shell: str) -> None:
    """Print the completion script for SHELL (bash, zsh or fish), e.g. in ~/.bashrc:
    eval "$(geoloc completion bash)" (the same as eval "$(_GEOLOC_COMPLETE=bash_source geoloc)")."""
    from click.shell_completion import get_completion_class

    from geoloc_ros.cli.main import cli

    completion_class = get_completion_class(shell)
    assert completion_class is not None  # click ships all three
    click.echo(completion_class(cli, {}, "geoloc", COMPLETION_ENV).source())
