"""``multiraft kv``: read and write keys.

Keys and values are UTF-8 text on the command line and in the output, or hex with
``--hex``. Exit status: 0 success, 1 error, 2 usage error, 3 negative answer (``get``:
no such key; ``cas``: not swapped). A write that fails with exit status 1 says whether its
outcome is unknown (it may have been applied).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from multiraft.cli.common import (
    DEFAULT_DATA_DIR_PATH,
    EXIT_NEGATIVE,
    DataDirOption,
    HexOption,
    JsonOption,
    PlacementOption,
    TimeoutOption,
    UsageError,
    cli_errors,
    echo_json,
    format_bytes,
    parse_bytes,
    parse_read_mode,
    run_with_client,
)
from multiraft.client import Client

kv_app = typer.Typer(
    help="Read and write keys. Exit status: 0 ok, 1 error, 2 usage error, "
    "3 key not found (get) or not swapped (cas).",
    no_args_is_help=True,
)

ReadModeOption = Annotated[
    str,
    typer.Option(
        "--read-mode",
        metavar="linearizable|lease|stale",
        help="How reads are served: ReadIndex, the leader's lease, or any replica (stale).",
    ),
]


def _entry(key: bytes, value: bytes | None, hex_: bool) -> dict[str, Any]:
    return {
        "key": format_bytes(key, hex_),
        "value": None if value is None else format_bytes(value, hex_),
    }


@kv_app.command("get")
@cli_errors
def get(
    key: Annotated[str, typer.Argument(help="The key.")],
    hex_: HexOption = False,
    as_json: JsonOption = False,
    read_mode: ReadModeOption = "linearizable",
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Print the value of KEY (exit status 3 if it has none)."""
    k = parse_bytes(key, hex_)
    mode = parse_read_mode(read_mode)

    async def op(client: Client) -> bytes | None:
        return await client.get(k)

    value = run_with_client(placement, data_dir, timeout, op, read_mode=mode)
    if as_json:
        echo_json({**_entry(k, value, hex_), "found": value is not None})
    elif value is not None:
        typer.echo(format_bytes(value, hex_))
    else:
        typer.echo(f"not found: {format_bytes(k, hex_)}", err=True)
    if value is None:
        raise typer.Exit(EXIT_NEGATIVE)


@kv_app.command("put")
@cli_errors
def put(
    key: Annotated[str, typer.Argument(help="The key.")],
    value: Annotated[str, typer.Argument(help="The value.")],
    hex_: HexOption = False,
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Set KEY to VALUE."""
    k = parse_bytes(key, hex_)
    v = parse_bytes(value, hex_, what="value")

    async def op(client: Client) -> None:
        await client.put(k, v)

    run_with_client(placement, data_dir, timeout, op)
    if as_json:
        echo_json({**_entry(k, v, hex_), "ok": True})
    else:
        typer.echo("OK")


@kv_app.command("delete")
@cli_errors
def delete(
    key: Annotated[str, typer.Argument(help="The key.")],
    hex_: HexOption = False,
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Delete KEY (no error if it does not exist)."""
    k = parse_bytes(key, hex_)

    async def op(client: Client) -> None:
        await client.delete(k)

    run_with_client(placement, data_dir, timeout, op)
    if as_json:
        echo_json({"key": format_bytes(k, hex_), "ok": True})
    else:
        typer.echo("OK")


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix`` (b"": none)."""
    p = bytearray(prefix)
    while p and p[-1] == 0xFF:
        p.pop()
    if not p:
        return b""
    p[-1] += 1
    return bytes(p)


@kv_app.command("scan")
@cli_errors
def scan(
    start: Annotated[str, typer.Argument(help="First key (inclusive); default: the first.")] = "",
    end: Annotated[str, typer.Argument(help="Last key (exclusive); default: no end.")] = "",
    prefix: Annotated[
        str | None, typer.Option("--prefix", help="Only keys starting with this.")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many pairs.")] = 100,
    keys_only: Annotated[bool, typer.Option("--keys-only", help="Print keys only.")] = False,
    hex_: HexOption = False,
    as_json: JsonOption = False,
    read_mode: ReadModeOption = "linearizable",
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Print the pairs with START <= key < END in key order, one per line: key<TAB>value."""
    lo = parse_bytes(start, hex_)
    hi = parse_bytes(end, hex_)
    if prefix is not None:
        if start or end:
            raise UsageError("give either --prefix or START/END, not both")
        lo = parse_bytes(prefix, hex_, what="prefix")
        hi = _prefix_end(lo)
    mode = parse_read_mode(read_mode)

    async def op(client: Client) -> list[tuple[bytes, bytes]]:
        return await client.scan(lo, hi, limit)

    pairs = run_with_client(placement, data_dir, timeout, op, read_mode=mode)
    if as_json:
        if keys_only:
            echo_json([format_bytes(k, hex_) for k, _ in pairs])
        else:
            echo_json([_entry(k, v, hex_) for k, v in pairs])
        return
    for k, v in pairs:
        if keys_only:
            typer.echo(format_bytes(k, hex_))
        else:
            typer.echo(f"{format_bytes(k, hex_)}\t{format_bytes(v, hex_)}")


@kv_app.command("cas")
@cli_errors
def cas(
    key: Annotated[str, typer.Argument(help="The key.")],
    expected: Annotated[
        str | None, typer.Option("--expected", help="Swap only if the value is this.")
    ] = None,
    absent: Annotated[
        bool, typer.Option("--absent", help="Swap only if the key does not exist.")
    ] = False,
    new: Annotated[str | None, typer.Option("--new", help="The value to set.")] = None,
    delete_: Annotated[
        bool, typer.Option("--delete", help="Delete the key instead of setting it.")
    ] = False,
    hex_: HexOption = False,
    as_json: JsonOption = False,
    placement: PlacementOption = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: TimeoutOption = 5.0,
) -> None:
    """Set KEY to --new (or --delete it) if its value is --expected (or it is --absent).

    Prints whether it swapped and the previous value; exit status 3 if not swapped.
    """
    if (expected is None) == (not absent):
        raise UsageError("give exactly one of --expected VALUE and --absent")
    if (new is None) == (not delete_):
        raise UsageError("give exactly one of --new VALUE and --delete")
    k = parse_bytes(key, hex_)
    exp = None if expected is None else parse_bytes(expected, hex_, what="value")
    nv = None if new is None else parse_bytes(new, hex_, what="value")

    async def op(client: Client) -> tuple[bool, bytes | None]:
        return await client.cas(k, exp, nv)

    swapped, previous = run_with_client(placement, data_dir, timeout, op)
    if as_json:
        echo_json(
            {
                "key": format_bytes(k, hex_),
                "swapped": swapped,
                "previous": None if previous is None else format_bytes(previous, hex_),
            }
        )
    else:
        was = "absent" if previous is None else format_bytes(previous, hex_)
        typer.echo(f"{'swapped' if swapped else 'not swapped'} (previous value: {was})")
    if not swapped:
        raise typer.Exit(EXIT_NEGATIVE)
