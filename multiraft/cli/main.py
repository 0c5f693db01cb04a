"""Entry point of the ``multiraft`` command: the root typer app and its groups."""

from __future__ import annotations

import os
import sys

import typer

from multiraft import __version__
from multiraft.cli.bench import bench_app
from multiraft.cli.cluster import cluster_app
from multiraft.cli.kv import kv_app
from multiraft.cli.operator import operator_app
from multiraft.cli.placement import placement_app
from multiraft.cli.region import region_app
from multiraft.cli.server import server_app
from multiraft.cli.store import store_app

app = typer.Typer(
    name="multiraft",
    help="multiraft: a sharded, replicated key-value storage engine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(cluster_app, name="cluster")
app.add_typer(bench_app, name="bench")
app.add_typer(kv_app, name="kv")
app.add_typer(store_app, name="store")
app.add_typer(region_app, name="region")
app.add_typer(operator_app, name="operator")
app.add_typer(placement_app, name="placement")
app.add_typer(server_app, name="server")


@app.command()
def version() -> None:
    """Print the multiraft version."""
    typer.echo(f"multiraft {__version__}")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"multiraft {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    show_version: bool = typer.Option(
        False, "--version", help="Print the version and exit.", callback=_version_callback,
        is_eager=True,
    ),
) -> None:
    """multiraft: a sharded, replicated key-value storage engine."""


def run() -> None:
    """The console script: the app, with a last guard so no traceback reaches a user.

    Every command turns its expected failures into one ``error:`` line itself;
    this catches anything unexpected. ``MULTIRAFT_DEBUG=1`` shows the traceback.
    """
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        if os.environ.get("MULTIRAFT_DEBUG"):
            raise
        typer.echo(
            f"error: unexpected {type(exc).__name__}: {exc} (MULTIRAFT_DEBUG=1 shows the traceback)",
            err=True,
        )
        sys.exit(1)
