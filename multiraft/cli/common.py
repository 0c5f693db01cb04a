"""What the client-side commands share: finding the cluster, keys on the command line,
output, and turning every failure into one line on stderr.

Finding the cluster (first that applies):

1. ``--placement HOST:PORT``, or the environment variable ``MULTIRAFT_PLACEMENT``;
2. the local cluster file ``<data-dir>/cluster.json`` written by ``multiraft cluster up``,
   where ``<data-dir>`` is ``--data-dir``, else ``MULTIRAFT_DATA_DIR``, else
   ``./multiraft-data``. The file is a JSON object with at least
   ``{"placement": "HOST:PORT"}`` (:func:`write_cluster_file` writes it).

Exit status of every client-side command: 0 success; 1 an error (the cluster cannot be
reached, a timeout, a write whose outcome is unknown...); 2 a usage error (a malformed
argument or address); 3 a negative answer (``kv get``: no such key; ``kv cas``: not
swapped). Errors are one line, ``error: ...``, on stderr; never a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, NoReturn, ParamSpec, TypeVar

import trio
import typer

from multiraft.client import Client, ClientError, ReadMode
from multiraft.placement.client import PlacementClient
from multiraft.placement.errors import PlacementClientError, PlacementRequestError
from multiraft.transport.connection import parse_address

__all__ = [
    "CLUSTER_FILE",
    "DEFAULT_DATA_DIR",
    "DEFAULT_DATA_DIR_PATH",
    "ENV_DATA_DIR",
    "ENV_PLACEMENT",
    "EXIT_ERROR",
    "EXIT_NEGATIVE",
    "EXIT_USAGE",
    "CliError",
    "DataDirOption",
    "HexOption",
    "JsonOption",
    "PlacementOption",
    "TimeoutOption",
    "UsageError",
    "cli_errors",
    "cluster_file_path",
    "echo_json",
    "echo_table",
    "fail",
    "find_placement",
    "format_bytes",
    "parse_bytes",
    "parse_read_mode",
    "read_cluster_file",
    "run_with_client",
    "run_with_placement",
    "write_cluster_file",
]

ENV_PLACEMENT: Final = "MULTIRAFT_PLACEMENT"
ENV_DATA_DIR: Final = "MULTIRAFT_DATA_DIR"
DEFAULT_DATA_DIR: Final = "./multiraft-data"
DEFAULT_DATA_DIR_PATH: Final = Path(DEFAULT_DATA_DIR)
CLUSTER_FILE: Final = "cluster.json"

#: Exit statuses.
EXIT_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_NEGATIVE: Final = 3

PlacementOption = Annotated[
    str | None,
    typer.Option(
        "--placement",
        envvar=ENV_PLACEMENT,
        metavar="HOST:PORT",
        help="The placement service's address (default: from <data-dir>/cluster.json).",
        show_default=False,
    ),
]
DataDirOption = Annotated[
    Path,
    typer.Option(
        "--data-dir",
        envvar=ENV_DATA_DIR,
        help="A local cluster's data directory, where `cluster up` wrote cluster.json.",
    ),
]
TimeoutOption = Annotated[
    float,
    typer.Option("--timeout", min=0.001, help="Seconds each request may take."),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]
HexOption = Annotated[
    bool, typer.Option("--hex", help="Keys and values are given and printed as hex.")
]


class CliError(Exception):
    """A failure to report as one line on stderr, with an exit status."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(CliError):
    """A malformed argument (exit status 2)."""

    exit_code = EXIT_USAGE


def fail(message: str, code: int = EXIT_ERROR) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


_P = ParamSpec("_P")
_T = TypeVar("_T")


def cli_errors(fn: Callable[_P, _T]) -> Callable[_P, _T]:
    """Decorate a command: CliError, ClientError and ValueError become one line on stderr."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return fn(*args, **kwargs)
        except CliError as e:
            fail(e.message, e.exit_code)
        except ClientError as e:
            fail(str(e), EXIT_ERROR)
        except ValueError as e:  # a malformed address or argument (ConfigError included)
            fail(str(e), EXIT_USAGE)

    return wrapper


# -- finding the cluster ---------------------------------------------------------------------


def cluster_file_path(data_dir: Path | str) -> Path:
    return Path(data_dir) / CLUSTER_FILE


def read_cluster_file(data_dir: Path | str) -> dict[str, Any]:
    """The cluster file of a local cluster (see the module docstring).

    Raises:
        CliError: missing, unreadable, or not a JSON object.
    """
    path = cluster_file_path(data_dir)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(
            f"no cluster found: {path} does not exist (pass --placement HOST:PORT, set "
            f"{ENV_PLACEMENT}, or start a local cluster with `multiraft cluster up`)"
        ) from None
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise CliError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise CliError(f"{path} does not hold a JSON object")
    return data


def write_cluster_file(data_dir: Path | str, info: Mapping[str, Any]) -> Path:
    """Write (atomically) the cluster file; ``info`` needs ``placement``: ``"HOST:PORT"``."""
    if not isinstance(info.get("placement"), str):
        raise ValueError("the cluster file needs a 'placement' address")
    path = cluster_file_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(dict(info), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def find_placement(placement: str | None, data_dir: Path | str) -> str:
    """The placement address: ``placement`` (option or env) if given, else the cluster file.

    Raises:
        UsageError: ``placement`` is not ``host:port``.
        CliError: no address given and no usable cluster file.
    """
    if placement is not None:
        try:
            parse_address(placement.strip())
        except ValueError:
            raise UsageError(
                f"bad placement address {placement!r}: expected HOST:PORT, e.g. 127.0.0.1:2379"
            ) from None
        return placement.strip()
    data = read_cluster_file(data_dir)
    address = data.get("placement")
    if isinstance(address, Mapping):
        address = address.get("address")
    path = cluster_file_path(data_dir)
    if not isinstance(address, str):
        raise CliError(f"{path} has no placement address")
    try:
        parse_address(address)
    except ValueError:
        raise CliError(f"{path} has a bad placement address {address!r}") from None
    return address


def run_with_client(
    placement: str | None,
    data_dir: Path | str,
    timeout: float,
    fn: Callable[[Client], Awaitable[_T]],
    *,
    read_mode: ReadMode = ReadMode.Linearizable,
) -> _T:
    """Find the cluster, open a :class:`~multiraft.client.Client`, run ``fn`` in trio."""
    address = find_placement(placement, data_dir)

    async def main() -> _T:
        async with Client(address, timeout=timeout, read_mode=read_mode) as client:
            return await fn(client)

    return trio.run(main)


def run_with_placement(
    placement: str | None,
    data_dir: Path | str,
    timeout: float,
    fn: Callable[[PlacementClient], Awaitable[_T]],
) -> _T:
    """Find the cluster, open a :class:`~multiraft.placement.client.PlacementClient` (each
    request's deadline ``timeout``), run ``fn`` in trio. The service's refusals and an
    unreachable service become :class:`CliError` (the refusal's own message)."""
    address = find_placement(placement, data_dir)

    async def main() -> _T:
        async with PlacementClient(address, timeout=timeout) as client:
            return await fn(client)

    try:
        return trio.run(main)
    except PlacementRequestError as e:
        raise CliError(e.message) from None
    except PlacementClientError as e:
        raise CliError(str(e)) from None


# -- keys and values -------------------------------------------------------------------------


def parse_bytes(text: str, hex_: bool, *, what: str = "key") -> bytes:
    """A key or value from the command line: UTF-8 text, or hex with ``--hex``.

    Raises:
        UsageError: not valid hex.
    """
    if not hex_:
        return text.encode("utf-8", errors="surrogateescape")
    cleaned = text.strip().removeprefix("0x").replace(" ", "")
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise UsageError(f"bad hex {what} {text!r}") from None


def format_bytes(data: bytes, hex_: bool) -> str:
    """Bytes for output: hex with ``--hex``; else UTF-8 text in which undecodable bytes and
    unprintable characters (controls, tabs, newlines) are escaped as ``\\xNN``/``\\uNNNN``,
    so that one key or value is always one line (use ``--hex`` for exact bytes)."""
    if hex_:
        return data.hex()
    text = data.decode("utf-8", errors="backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def _escape(c: str) -> str:
    n = ord(c)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


_READ_MODES: Final = {"linearizable": ReadMode.Linearizable, "lease": ReadMode.Lease,
                      "stale": ReadMode.Stale}  # fmt: skip


def parse_read_mode(text: str) -> ReadMode:
    """``linearizable`` | ``lease`` | ``stale``.

    Raises:
        UsageError: another word.
    """
    try:
        return _READ_MODES[text.lower()]
    except KeyError:
        raise UsageError(
            f"bad read mode {text!r}: expected one of {', '.join(_READ_MODES)}"
        ) from None


# -- output ----------------------------------------------------------------------------------


def echo_json(obj: Any) -> None:
    """Print ``obj`` as JSON (one document, indented)."""
    typer.echo(json.dumps(obj, indent=2))


def echo_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Print an aligned plain-text table (two spaces between columns)."""
    cells = [list(headers)] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for r in cells:
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
        typer.echo(line.rstrip())


def stderr_is_tty() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False
