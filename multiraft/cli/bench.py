"""``multiraft bench``: the benchmarks, one subcommand each."""

from __future__ import annotations

import typer

bench_app = typer.Typer(help="Run benchmarks and print their figures.", no_args_is_help=True)


@bench_app.command("raft")
def bench_raft(
    seconds: float = typer.Option(3.0, "--seconds", min=0.1, help="Run time per batch size."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Raft core only: a 3-node in-memory group, proposals batched 1, 16 and 256."""
    from multiraft.bench import raft

    raft.main(seconds=seconds, as_json=as_json)
