"""One tool: every subcommand's options follow the same rules (names, help text, --json), checked by
walking the click tree."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from geoloc_ros.cli.common import BAG_HELP, DEPRECATED_PREFIX, MAP_HELP, POSENET_HELP
from geoloc_ros.cli.main import DASK_LOG_LEVEL_ENV, SHORT_HELP, SUBCOMMANDS, cli

# Commands that print no summary to switch to JSON: their output is JSON or YAML already, or they
# print a script.
NO_JSON = {
    "posenet info": "prints JSON",
    "posenet predict": "prints one JSON line per image",
    "posenet default-config": "prints YAML",
    "completion": "prints a shell script",
}
# One flag per concept, whatever the subcommand (parameter name -> the flag it must have).
CONCEPT_FLAGS = {
    "bag": "--bag",
    "map_dir": "--map",
    "overwrite": "--overwrite",
    "as_json": "--json",
    "providers": "--providers",
    "max_frames": "--max-frames",
    "config_path": "--config",
    "mounting": "--mounting",
    "posenet": "--posenet",
    "workers": "--workers",
    "loader_workers": "--loader-workers",
    "threads": "--threads",
    "views_dir": "--views",
    "panoramas_dir": "--panoramas",
}
# A flag names one concept: the parameter names it may have (one unless listed here).
FLAG_PARAMETERS = {
    "--out": {"out_dir", "out", "out_path", "run_dir"},  # a directory, a file or a training run
    "--camera": {"camera", "camera_path"},
    "--scenario": {"scenario", "scenario_name"},
}
# Second names of a concept that has one already: never a visible flag (a renamed one may stay as a
# hidden deprecated alias, cli/common.py renamed_option).
SYNONYMS = {
    "--drive": "--bag",
    "--drives": "--bag",
    "--model": "--posenet",
    "--posenet-model": "--posenet",
    "--bundle": "--map",
    "--output": "--out",
    "--jobs": "--workers",
    "--processes": "--workers",
    "--num-workers": "--loader-workers",
    "--num-threads": "--threads",
}


# Inputs every command declares with cli/common.py's options (flag -> parameter name).
SHARED_INPUTS = {"--bag": "bag", "--map": "map_dir", "--posenet": "posenet"}
SHARED_HELP = {"--bag": BAG_HELP, "--map": MAP_HELP, "--posenet": POSENET_HELP}


def _leaf_commands() -> list[tuple[str, click.Command]]:
    ctx = click.Context(cli)
    out = []

    def walk(command: click.Command, path: list[str]) -> None:
        if isinstance(command, click.Group):
            for name in command.list_commands(ctx):
                sub = command.get_command(ctx, name)
                assert sub is not None, f"{' '.join([*path, name])} cannot be loaded"
                walk(sub, [*path, name])
        else:
            out.append((" ".join(path), command))

    walk(cli, [])
    return out


LEAVES = _leaf_commands()


def test_every_subcommand_is_listed_with_a_short_help() -> None:
    assert set(SHORT_HELP) == set(SUBCOMMANDS)
    assert {name.split()[0] for name, _ in LEAVES} == set(SUBCOMMANDS)


@pytest.mark.parametrize(("name", "command"), LEAVES, ids=[name for name, _ in LEAVES])
def test_options_have_help_one_name_per_concept_and_json(name: str, command: click.Command) -> None:
    assert command.help, f"geoloc {name} has no help text"
    options = [p for p in command.params if isinstance(p, click.Option)]
    for option in options:
        flags = option.opts + option.secondary_opts
        assert option.help, f"geoloc {name} {flags[0]}: no help text"
        assert all(re.fullmatch(r"-[a-z]|--[a-z0-9]+(-[a-z0-9]+)*", f) for f in flags), flags
        expected = CONCEPT_FLAGS.get(option.name or "")
        assert expected is None or expected in flags, f"geoloc {name}: {flags} should be {expected}"
        for flag, shared in SHARED_INPUTS.items():
            if flag in flags:  # the shared option of cli/common.py: one name and one help per input
                assert option.name == shared and option.help.startswith(SHARED_HELP[flag]), (name, flag)
    for argument in (p for p in command.params if isinstance(p, click.Argument)):
        # Inputs with a flag elsewhere are never positional; positionals are named in the help text.
        assert argument.name not in CONCEPT_FLAGS, f"geoloc {name}: {argument.name} should be an option"
        assert argument.human_readable_name in command.help, (
            f"geoloc {name}: the help text does not explain {argument.human_readable_name}"
        )
    names = {o.name for o in options}
    assert "as_json" in names or name in NO_JSON, f"geoloc {name} prints a summary but has no --json"


def _visible_options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option) and not p.hidden]


def test_one_name_per_concept_across_subcommands() -> None:
    """The same concept never goes by two names: a parameter has one flag in every subcommand, a flag
    one parameter (FLAG_PARAMETERS: the listed variants), and no flag is a known second name."""
    flags_of: dict[str, set[str]] = {}
    parameters_of: dict[str, set[str]] = {}
    for _, command in LEAVES:
        for option in _visible_options(command):
            long = [f for f in option.opts + option.secondary_opts if f.startswith("--")]
            flags_of.setdefault(option.name or "", set()).add(long[0])
            for flag in long:
                parameters_of.setdefault(flag, set()).add(option.name or "")
    two_flags = {name: flags for name, flags in flags_of.items() if len(flags) > 1}
    assert not two_flags, f"one concept, several flags: {two_flags}"
    two_concepts = {
        flag: names
        for flag, names in parameters_of.items()
        if len(names) > 1 and not names <= FLAG_PARAMETERS.get(flag, set())
    }
    assert not two_concepts, f"one flag, several concepts: {two_concepts}"
    second_names = {flag: SYNONYMS[flag] for flag in parameters_of if flag in SYNONYMS}
    assert not second_names, f"second names of a concept (flag: the concept's name): {second_names}"
    for name, command in LEAVES:  # --workers: the command's own processes, every core by default
        for option in _visible_options(command):
            if option.name == "workers":
                # not given, it is None (every core): no number as its default
                assert not isinstance(option.default, int), f"geoloc {name} --workers"
                assert option.type.min == 1, f"geoloc {name} --workers"  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "command"), LEAVES, ids=[name for name, _ in LEAVES])
def test_hidden_options_are_deprecated_spellings(name: str, command: click.Command) -> None:
    """A hidden option is the old spelling of a visible one of the same command (renamed_option)."""
    visible = {o.name: o for o in _visible_options(command)}
    for option in (p for p in command.params if isinstance(p, click.Option) and p.hidden):
        assert option.name and option.name.startswith(DEPRECATED_PREFIX), (name, option.opts)
        target = visible.get(option.name.removeprefix(DEPRECATED_PREFIX))
        assert target is not None, f"geoloc {name} {option.opts}: renames no option of the command"
        assert option.multiple == target.multiple, (name, option.opts)
        assert not set(option.opts) & {f for o in visible.values() for f in o.opts}, (name, option.opts)


def test_verbosity_is_global() -> None:
    flags = {f for p in cli.params for f in p.opts}
    assert {"-v", "--verbose", "-q", "--quiet"} <= flags
    result = CliRunner().invoke(cli, ["-q", "evaluate", "--help"])
    assert result.exit_code == 0 and "--compare" in result.output


def test_dask_is_quiet_unless_verbose() -> None:
    """distributed sets its loggers to INFO when imported (after the CLI configured logging)."""
    script = (
        "import logging, sys\n"
        "from geoloc_ros.cli.main import configure_logging\n"
        "configure_logging(int(sys.argv[1]), False)\n"
        "import distributed\n"
        "print(logging.getLogger('distributed.scheduler').getEffectiveLevel())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != DASK_LOG_LEVEL_ENV}
    levels = [
        subprocess.run(
            [sys.executable, "-c", script, str(verbose)], env=env, capture_output=True, text=True, check=True
        ).stdout.strip()
        for verbose in (0, 1)
    ]
    assert levels == [str(logging.WARNING), str(logging.INFO)]
