"""``multiraft placement``: run the placement service.

``multiraft placement start --listen 127.0.0.1:2379 --data-dir ./pd`` runs the service in the
foreground until SIGINT or SIGTERM. Settings come from ``--config file.toml`` (its
``[placement]`` table, or its top level), then from the flags, which win. Every failure a user
can cause (a bad address, a port in use, a locked or damaged data directory, a bad config
file) is one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import trio
import typer

from multiraft.settings import ConfigError, PlacementConfig

placement_app = typer.Typer(help="Run the placement service.", no_args_is_help=True)

log = logging.getLogger("multiraft.cli.placement")

_LOG_LEVELS = ("debug", "info", "warning", "error")


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The non-group exceptions inside ``exc`` (itself if it is not a group)."""
    if isinstance(exc, BaseExceptionGroup):
        out: list[BaseException] = []
        for e in exc.exceptions:
            out += _leaves(e)
        return out
    return [exc]


def _user_message(exc: BaseException) -> str | None:
    """A one-line explanation of a failure a user can fix, or None for an unexpected one."""
    from multiraft.placement import ListenError, MetaCorrupted
    from multiraft.storage import DataDirLocked, IncompatibleFormat, StorageFull

    if isinstance(exc, DataDirLocked):
        return (
            f"the data directory {exc.path} is in use by another process "
            "(another placement service or store is running on it)"
        )
    if isinstance(exc, ListenError):
        return str(exc.strerror)
    if isinstance(exc, ConfigError | MetaCorrupted | IncompatibleFormat | StorageFull):
        return str(exc)
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return None


async def _serve(config: PlacementConfig) -> None:
    from multiraft.placement import run_placement

    async with trio.open_nursery() as nursery:
        endpoints = await nursery.start(run_placement, config)
        metrics = endpoints.metrics_address
        typer.echo(
            f"placement service of cluster {endpoints.cluster_id:#x} listening on "
            f"{endpoints.address}" + (f", metrics at http://{metrics}/metrics" if metrics else "")
        )
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("received %s: stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


@placement_app.command("start")
def start(
    listen: Annotated[
        str | None,
        typer.Option("--listen", help="host:port to listen on (default 127.0.0.1:2379)."),
    ] = None,
    advertise: Annotated[
        str | None,
        typer.Option(
            "--advertise", help="host:port stores and clients should use (default: --listen)."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="Directory of the metadata (default multiraft-data/placement)."
        ),
    ] = None,
    metrics_listen: Annotated[
        str | None,
        typer.Option(
            "--metrics-listen",
            help='host:port serving /metrics, "" for none (default 127.0.0.1:9379).',
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file with the settings (flags override it)."),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Start the placement service in the foreground (stop it with Ctrl-C or SIGTERM)."""
    if log_level not in _LOG_LEVELS:
        _fail(f"--log-level must be one of {', '.join(_LOG_LEVELS)}, not {log_level!r}", 2)
    try:
        config = PlacementConfig.load(config_file) if config_file else PlacementConfig()
        flags: dict[str, Any] = {
            "listen": listen,
            "advertise": advertise,
            "data_dir": data_dir,
            "metrics_listen": metrics_listen,
        }
        config = dataclasses.replace(
            config, **{k: v for k, v in flags.items() if v is not None}
        ).validate()
    except ConfigError as e:
        _fail(str(e), 2)
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        trio.run(_serve, config)
    except BaseException as exc:  # everything becomes one line for the user
        leaves = _leaves(exc)
        if any(isinstance(e, KeyboardInterrupt) for e in leaves):
            raise typer.Exit(130) from None
        for leaf in leaves:
            message = _user_message(leaf)
            if message is not None:
                _fail(message)
        log.debug("placement service failed", exc_info=exc)
        first = leaves[0] if leaves else exc
        _fail(
            f"the placement service failed: {type(first).__name__}: {first} "
            "(run with --log-level debug for details)"
        )
    typer.echo("placement service stopped")
