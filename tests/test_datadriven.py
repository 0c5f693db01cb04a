"""Tests of the datadriven runner itself: parsing, comparison and rewriting."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.datadriven import (
    REWRITE_ENV,
    CmdArg,
    DatadrivenError,
    TestData,
    parse,
    rewrite_from_env,
    run_test,
    scenario_files,
)


def echo(d: TestData) -> str:
    """A handler whose output is its input."""
    return d.input


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.txt"
    path.write_text(text)
    return path


def test_parse_args() -> None:
    [d] = parse('cmd 1 key=v tup=(1, 2,3) empty=() q="a b" blank= x-y.z/w\n----\n', "f.txt")
    assert d.pos == "f.txt:1"
    assert d.cmd == "cmd"
    assert d.args == [
        CmdArg("1"),
        CmdArg("key", ("v",)),
        CmdArg("tup", ("1", "2", "3")),
        CmdArg("empty"),
        CmdArg("q", ("a b",)),
        CmdArg("blank", ("",)),
        CmdArg("x-y.z/w"),
    ]
    assert d.cmd_line() == 'cmd 1 key=v tup=(1, 2, 3) empty q="a b" blank="" x-y.z/w'
    assert d.input == ""
    assert d.expected == ""


def test_scan_helpers() -> None:
    [d] = parse("propose 1 2 n=7 s=foo ids=(4,5) one=(9)\n----\n", "f.txt")
    assert d.has("n")
    assert not d.has("missing")
    assert d.scan_int("n") == 7
    assert d.scan_int("one") == 9
    assert d.scan_int("missing", 3) == 3
    assert d.scan_str("s") == "foo"
    assert d.scan_str("missing", "") == ""
    assert d.scan_ints("ids") == [4, 5]
    assert d.scan_ints("n") == [7]
    assert d.scan_ints("missing", []) == []
    assert d.positional_ints() == [1, 2]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda d: d.scan_int("missing"), "f.txt:2: cmd: missing argument missing="),
        (lambda d: d.scan_int("s"), "f.txt:2: cmd: argument s: 'foo' is not an integer"),
        (lambda d: d.scan_str("ids"), "argument ids needs exactly one value, has 2"),
        (lambda d: d.scan_ints("missing"), "missing argument missing="),
        (lambda d: d.positional_ints(), "'flag' is not an integer"),
    ],
)
def test_scan_errors_name_the_position(call: Callable[[TestData], object], message: str) -> None:
    [d] = parse("# comment\ncmd flag s=foo ids=(1,2)\n----\n", "f.txt")
    with pytest.raises(DatadrivenError, match=re.escape(message)):
        call(d)


def test_comments_multiline_input_and_continuation() -> None:
    text = """\
# A comment, then a blank line.

first a=1 \\
  b=2
line one
  line two
----
out 1
out 2

  # an indented comment
second
----
"""
    first, second = parse(text, "f.txt")
    assert first.pos == "f.txt:3"
    assert first.args == [CmdArg("a", ("1",)), CmdArg("b", ("2",))]
    assert first.input == "line one\n  line two"
    assert first.expected == "out 1\nout 2\n"
    assert second.pos == "f.txt:12"
    assert second.expected == ""


def test_double_separator_holds_blank_lines() -> None:
    text = """\
cmd
----
----
para 1

para 2
----
next to a single ----
----
----

other
----
x
"""
    first, second = parse(text)
    assert first.expected == "para 1\n\npara 2\n----\nnext to a single ----\n"
    assert second.cmd == "other"
    assert second.expected == "x\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cmd\ninput\n", "f.txt:1: cmd: no ---- line"),
        ("\ncmd\n----\n----\nx\n", "f.txt:2: cmd: unterminated ----/---- output"),
        ("cmd\n----\n----\nx\n----\n----\ny\n", "f.txt:7: non-blank line after the doubled"),
        ("cmd k=(1,2\n----\n", "f.txt:1: cannot parse arguments at 'k=\\(1,2'"),
        ('cmd "quoted positional"\n----\n', "f.txt:1: cannot parse arguments"),
    ],
)
def test_malformed_files(text: str, message: str) -> None:
    with pytest.raises(DatadrivenError, match=message):
        parse(text, "f.txt")


def test_run_passes_on_matching_output(tmp_path: Path) -> None:
    path = write(tmp_path, "a\nx\n----\nx\n\nb\n----\n\nc\n----\n----\nx\n\ny\n----\n----\n")
    outputs = {"a": "x", "b": "", "c": "x\n\ny\n"}
    seen: list[str] = []

    def handler(d: TestData) -> str:
        seen.append(d.cmd)
        return outputs[d.cmd]

    run_test(path, handler, rewrite=False)
    assert seen == ["a", "b", "c"]


def test_mismatch_raises_with_position_and_diff(tmp_path: Path) -> None:
    path = write(
        tmp_path, "# header\n\nok\n----\nfine\n\nbad k=1\n----\nold\nsame\n\nnever\n----\n"
    )
    seen: list[str] = []

    def handler(d: TestData) -> str:
        seen.append(d.cmd)
        return {"ok": "fine", "bad": "new\nsame\n"}[d.cmd]

    with pytest.raises(AssertionError) as info:
        run_test(path, handler, rewrite=False)
    msg = str(info.value)
    assert msg.startswith(f"{path}:7: output of 'bad k=1' differs")
    assert "--- expected\n+++ actual\n" in msg
    assert "-old\n+new\n same\n" in msg
    assert "--rewrite" in msg
    assert seen == ["ok", "bad"]  # stops at the first mismatch


def test_handler_exception_gets_the_position(tmp_path: Path) -> None:
    path = write(tmp_path, "boom\n----\n")

    def handler(d: TestData) -> str:
        raise KeyError("nope")

    with pytest.raises(KeyError) as info:
        run_test(path, handler, rewrite=False)
    assert info.value.__notes__ == [f"while running {path}:1: boom"]


REWRITE_BEFORE = """\
# Comments and spacing survive a rewrite.

single
hello
----
stale

to-double
a

b
----
stale

to-single
a
----
----
stale

stale
----
----

empty
----
gone

sep-first
----
----
x
----
----
"""

REWRITE_AFTER = """\
# Comments and spacing survive a rewrite.

single
hello
----
hello

to-double
a

b
----
----
a

b
----
----

to-single
a
----
a

empty
----

sep-first
----
----
----
x
----
----
"""


def test_rewrite_regenerates_expected_outputs(tmp_path: Path) -> None:
    path = write(tmp_path, REWRITE_BEFORE)
    outputs = {"empty": "", "sep-first": "----\nx"}

    def handler(d: TestData) -> str:
        return outputs.get(d.cmd, d.input)

    run_test(path, handler, rewrite=True)
    assert path.read_text() == REWRITE_AFTER
    run_test(path, handler, rewrite=False)  # now it passes
    run_test(path, handler, rewrite=True)  # and a second rewrite changes nothing
    assert path.read_text() == REWRITE_AFTER


def test_rewrite_adds_final_newline_and_keeps_file_on_error(tmp_path: Path) -> None:
    path = write(tmp_path, "a\n----")
    run_test(path, lambda d: "out", rewrite=True)
    assert path.read_text() == "a\n----\nout\n"

    def failing(d: TestData) -> str:
        raise RuntimeError("handler failed")

    with pytest.raises(RuntimeError):
        run_test(path, failing, rewrite=True)
    assert path.read_text() == "a\n----\nout\n"


def test_rewrite_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "a\nnew\n----\nold\n")
    monkeypatch.setenv(REWRITE_ENV, "0")
    with pytest.raises(AssertionError):
        run_test(path, echo)
    monkeypatch.setenv(REWRITE_ENV, "1")
    with pytest.raises(AssertionError):
        run_test(path, echo, rewrite=False)  # an explicit flag wins
    run_test(path, echo)
    assert path.read_text() == "a\nnew\n----\nnew\n"


def test_rewrite_fixture(rewrite: bool, request: pytest.FixtureRequest) -> None:
    assert rewrite is (bool(request.config.getoption("rewrite")) or rewrite_from_env())


def test_scenario_files(tmp_path: Path) -> None:
    for name in ("b.txt", "a.txt", "c.md"):
        (tmp_path / name).write_text("")
    assert [p.name for p in scenario_files(tmp_path)] == ["a.txt", "b.txt"]
