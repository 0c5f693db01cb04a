"""``multiraft bench``: the benchmarks, one subcommand each."""

from __future__ import annotations

import typer

bench_app = typer.Typer(help="Run benchmarks and print their figures.", no_args_is_help=True)
