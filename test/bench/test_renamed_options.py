"""The bench scripts take a renamed option's old spelling, with a warning, and declare only the new one."""

from __future__ import annotations

import argparse
import ast
import logging
from pathlib import Path

import pytest
from renamed_options import RENAMED, parse_args

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bag", type=Path, required=True)
    parser.add_argument("--posenet", type=Path)
    parser.add_argument("--model-size", type=int)  # not a renamed option, though it starts like one
    return parser


def test_old_spellings_are_taken_as_the_new_ones_with_a_warning(caplog) -> None:
    """``--drive`` is ``--bag``, ``--model`` ``--posenet`` (``--model=M`` too), ``--model-size`` stays."""
    with caplog.at_level(logging.WARNING, logger="renamed_options"):
        args = parse_args(_parser(), ["--bag", "d", "--posenet", "m.onnx"])
        assert not caplog.records
        old = parse_args(_parser(), ["--drive", "d", "--model=m.onnx", "--model-size", "3"])
    assert (old.bag, old.posenet, old.model_size) == (args.bag, args.posenet, 3)
    assert (args.bag, args.posenet) == (Path("d"), Path("m.onnx"))
    assert [r.getMessage() for r in caplog.records] == [
        "--drive is deprecated (renamed --bag): it will go in a later release",
        "--model is deprecated (renamed --posenet): it will go in a later release",
    ]


def test_a_spelling_the_script_does_not_rename_is_left_to_argparse() -> None:
    with pytest.raises(SystemExit):
        parse_args(_parser(), ["--bag", "d", "--model-fp16", "m.onnx"])  # no --posenet-fp16 here


def _prints_json(flag: str, call: ast.Call) -> bool:
    """``--json`` as a flag (print the figures as JSON, as geoloc's): not the old ``--json FILE``."""
    action = [k.value for k in call.keywords if k.arg == "action"]
    return flag == "--json" and [getattr(a, "value", None) for a in action] == ["store_true"]


def test_no_bench_script_declares_an_old_spelling() -> None:
    declared = {
        (script.name, arg.value)
        for script in BENCH.glob("*.py")
        for node in ast.walk(ast.parse(script.read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument"
        for arg in node.args
        if isinstance(arg, ast.Constant) and arg.value in RENAMED and not _prints_json(arg.value, node)
    }
    assert not declared, f"renamed options declared again: {sorted(declared)}"
