"""A runner for scenario files in the cockroachdb/datadriven text format.

A file is a sequence of directives; blank lines separate them and lines starting
with ``#`` are comments::

    # The second index decides: the result is the smaller of the two.
    committed cfg=(1,2) idx=(12,5)
    optional input lines
    ----
    5

The command line is ``cmd arg key=value key=(a, b, c) key="a quoted value"``; a
trailing ``\\`` continues it on the next line. Input lines (stripped as a whole)
run up to the ``----`` separator, and the expected output up to the first blank
line. Output that itself holds blank lines sits between doubled separators::

    cmd
    ----
    ----
    first paragraph

    second paragraph
    ----
    ----

:func:`run_test` hands each directive to a handler in file order and fails at the
first whose output (given a trailing newline) differs from the expected text.
With ``rewrite=True`` it writes the actual outputs back into the file instead:
pass the ``rewrite`` fixture (``python -m pytest --rewrite``), or set
``MULTIRAFT_REWRITE=1``.

NB: after a rewrite, inspect the diff. Commit the new expectations only if you
understand what changed them and want the change.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

__all__ = [
    "REWRITE_ENV",
    "CmdArg",
    "DatadrivenError",
    "TestData",
    "parse",
    "rewrite_from_env",
    "run_test",
    "scenario_files",
]

#: Setting this environment variable to anything but ``""`` or ``"0"`` turns rewrite mode on.
REWRITE_ENV = "MULTIRAFT_REWRITE"
SEPARATOR = "----"

# One argument: ``key``, ``key=value``, ``key=(a, b)`` or ``key="a value"``.
_ARG = re.compile(r'\s*([^\s=()"]+)(?:=(?:\(([^)]*)\)|"([^"]*)"|([^\s()"]*)))?(?=\s|$)')


class DatadrivenError(ValueError):
    """A malformed scenario file, or a directive whose arguments do not fit its command."""


@dataclass(frozen=True, slots=True)
class CmdArg:
    """One argument of a command line. A bare ``key`` has no ``vals``."""

    key: str
    vals: tuple[str, ...] = ()

    def __str__(self) -> str:
        vals = [f'"{v}"' if not v or re.search(r'[\s(),"]', v) else v for v in self.vals]
        if not vals:
            return self.key
        return f"{self.key}={vals[0]}" if len(vals) == 1 else f"{self.key}=({', '.join(vals)})"


@dataclass(slots=True)
class TestData:
    """One directive: where it is, its command and arguments, its input and expected output.

    ``pos`` is ``"file:line"`` of the command line. ``expected`` ends with a newline
    unless it is empty, like a normalised handler output.
    """

    __test__ = False  # a data class, not a pytest test class

    pos: str
    cmd: str
    args: list[CmdArg] = field(default_factory=list)
    input: str = ""
    expected: str = ""

    def cmd_line(self) -> str:
        """The command line, as parsed (useful in messages)."""
        return " ".join([self.cmd, *map(str, self.args)])

    def fail(self, msg: str) -> NoReturn:
        """Raise :class:`DatadrivenError` with this directive's position."""
        raise DatadrivenError(f"{self.pos}: {self.cmd}: {msg}")

    def arg(self, key: str) -> CmdArg | None:
        """The first argument named ``key``, or None."""
        return next((a for a in self.args if a.key == key), None)

    def has(self, key: str) -> bool:
        return self.arg(key) is not None

    def scan_str(self, key: str, default: str | None = None) -> str:
        """The single value of ``key=value``; ``default`` if absent (else an error)."""
        a = self.arg(key)
        if a is None:
            if default is None:
                self.fail(f"missing argument {key}=")
            return default
        if len(a.vals) != 1:
            self.fail(f"argument {key} needs exactly one value, has {len(a.vals)}")
        return a.vals[0]

    def scan_int(self, key: str, default: int | None = None) -> int:
        """The single integer value of ``key=N``; ``default`` if absent (else an error)."""
        if default is not None and not self.has(key):
            return default
        return self._int(key, self.scan_str(key))

    def scan_ints(self, key: str, default: list[int] | None = None) -> list[int]:
        """All values of ``key=(1, 2, 3)`` (or ``key=1``, ``key=()``) as integers."""
        a = self.arg(key)
        if a is None:
            if default is None:
                self.fail(f"missing argument {key}=")
            return list(default)
        return [self._int(key, v) for v in a.vals]

    def positional_ints(self) -> list[int]:
        """The value-less arguments as integers, as in ``deliver-msgs 1 2``."""
        return [self._int("positional", a.key) for a in self.args if not a.vals]

    def _int(self, key: str, v: str) -> int:
        try:
            return int(v)
        except ValueError:
            self.fail(f"argument {key}: {v!r} is not an integer")


@dataclass(slots=True)
class _Directive:
    data: TestData
    out_start: int  # index of the (first) ---- line
    out_end: int  # one past the last line of the expected-output block


def _parse_command(line: str, pos: str) -> tuple[str, list[CmdArg]]:
    cmd, rest = [*line.split(None, 1), ""][:2]
    args: list[CmdArg] = []
    i = 0
    while rest[i:].strip():
        m = _ARG.match(rest, i)
        if m is None:
            raise DatadrivenError(f"{pos}: cannot parse arguments at {rest[i:].strip()!r}")
        key, tup, quoted, bare = m.groups()
        if tup is not None:
            vals = tuple(v.strip() for v in tup.split(",")) if tup.strip() else ()
        elif quoted is not None:
            vals = (quoted,)
        else:
            vals = () if bare is None else (bare,)
        args.append(CmdArg(key, vals))
        i = m.end()
    return cmd, args


def _parse(lines: list[str], name: str) -> list[_Directive]:
    out: list[_Directive] = []
    i, n = 0, len(lines)
    while i < n:
        line = lines[i].strip()
        if not line or line.startswith("#"):
            i += 1
            continue
        pos = f"{name}:{i + 1}"
        while line.endswith("\\") and i + 1 < n:
            i += 1
            line = line[:-1].rstrip() + " " + lines[i].strip()
        cmd, args = _parse_command(line, pos)
        i += 1
        start = i
        while i < n and lines[i] != SEPARATOR:
            i += 1
        if i == n:
            raise DatadrivenError(f"{pos}: {cmd}: no {SEPARATOR} line before the end of the file")
        data = TestData(pos, cmd, args, "\n".join(lines[start:i]).strip())
        out_start = i
        i += 1
        expected: list[str] = []
        if i < n and lines[i] == SEPARATOR:  # doubled: ends at ----\n----
            i += 1
            while i + 1 < n and not (lines[i] == SEPARATOR and lines[i + 1] == SEPARATOR):
                expected.append(lines[i])
                i += 1
            if i + 1 >= n:
                raise DatadrivenError(f"{pos}: {cmd}: unterminated {SEPARATOR}/{SEPARATOR} output")
            i += 2
            if i < n and lines[i].strip():
                raise DatadrivenError(f"{name}:{i + 1}: non-blank line after the doubled separator")
        else:
            while i < n and lines[i].strip():
                expected.append(lines[i])
                i += 1
        data.expected = "".join(e + "\n" for e in expected)
        out.append(_Directive(data, out_start, i))
    return out


def _split(text: str) -> list[str]:
    lines = text.split("\n")
    return lines[:-1] if text.endswith("\n") else lines


def parse(text: str, name: str = "<string>") -> list[TestData]:
    """Parse a scenario file's text; ``name`` prefixes each position.

    Raises:
        DatadrivenError: on a malformed directive.
    """
    return [d.data for d in _parse(_split(text), name)]


def _output_block(actual: str) -> list[str]:
    body = actual.split("\n")[:-1]
    if any(not line.strip() for line in body) or body[:1] == [SEPARATOR]:
        return [SEPARATOR, SEPARATOR, *body, SEPARATOR, SEPARATOR]
    return [SEPARATOR, *body]


def _mismatch(d: TestData, actual: str) -> str:
    diff = difflib.unified_diff(
        d.expected.splitlines(keepends=True),
        actual.splitlines(keepends=True),
        "expected",
        "actual",
    )
    return (
        f"{d.pos}: output of {d.cmd_line()!r} differs from the expected output\n"
        + "".join(diff)
        + f"(to regenerate: python -m pytest --rewrite, or {REWRITE_ENV}=1; inspect the diff)"
    )


def rewrite_from_env() -> bool:
    """Whether ``MULTIRAFT_REWRITE`` asks for rewrite mode (any value but ``""`` or ``"0"``)."""
    return os.environ.get(REWRITE_ENV, "") not in ("", "0")


def run_test(
    path: str | os.PathLike[str],
    handler: Callable[[TestData], str],
    *,
    rewrite: bool | None = None,
) -> None:
    """Run every directive of the file at ``path`` through ``handler``, in order.

    Args:
        path: the scenario file.
        handler: returns a directive's output; a missing trailing newline is added.
        rewrite: write the actual outputs into the file instead of comparing them.
            None (the default) reads the ``MULTIRAFT_REWRITE`` environment variable.

    Raises:
        AssertionError: at the first mismatch, with the position and a unified diff.
        DatadrivenError: on a malformed file. An exception from ``handler``
            propagates with a note giving the directive's position.
    """
    if rewrite is None:
        rewrite = rewrite_from_env()
    p = Path(path)
    text = p.read_text(encoding="utf-8")
    lines = _split(text)
    new_lines: list[str] = []
    done = 0
    for d in _parse(lines, str(path)):
        try:
            actual = handler(d.data)
        except Exception as exc:
            exc.add_note(f"while running {d.data.pos}: {d.data.cmd_line()}")
            raise
        if actual and not actual.endswith("\n"):
            actual += "\n"
        if rewrite:
            new_lines += [*lines[done : d.out_start], *_output_block(actual)]
            done = d.out_end
        elif actual != d.data.expected:
            raise AssertionError(_mismatch(d.data, actual))
    if rewrite:
        new_text = "\n".join([*new_lines, *lines[done:]]) + "\n"
        if new_text != text:
            p.write_text(new_text, encoding="utf-8")


def scenario_files(directory: str | os.PathLike[str], pattern: str = "*.txt") -> list[Path]:
    """The scenario files in ``directory``, sorted, for ``pytest.mark.parametrize``."""
    return sorted(Path(directory).glob(pattern))
