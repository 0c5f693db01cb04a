"""``multiraft server``: run a store process.

``multiraft server start --store-listen 127.0.0.1:20160 --placement 127.0.0.1:2379
--data-dir ./store1`` runs a store in the foreground until SIGINT or SIGTERM. Settings come
from ``--config file.toml`` (its ``[store]`` table, or its top level), then from the flags,
which win. Every failure a user can cause (a bad address, a port in use, a locked or
damaged data directory, a data directory of another cluster, placement unreachable at
startup, a bad config file) is one line on stderr and a non-zero exit status, never a
traceback.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
from pathlib import Path
from typing import Annotated, Any, NoReturn

import trio
import typer

from multiraft.settings import ConfigError, StoreConfig

server_app = typer.Typer(help="Run a store server.", no_args_is_help=True)

log = logging.getLogger("multiraft.cli.server")

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
    from multiraft.placement.errors import PlacementClientError
    from multiraft.storage import IncompatibleFormat, StorageFull
    from multiraft.store import StoreStartError

    if isinstance(exc, StoreStartError | ConfigError | IncompatibleFormat | StorageFull):
        return str(exc)
    if isinstance(exc, PlacementClientError):
        return f"placement: {exc}"
    if isinstance(exc, PermissionError):
        return f"permission denied: {exc.filename or exc}"
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return f"{exc.strerror or exc}{where}"
    return None


async def _serve(config: StoreConfig) -> None:
    from multiraft.store import run_store

    async with trio.open_nursery() as nursery:
        ep = await nursery.start(run_store, config)
        metrics = f", metrics at http://{ep.metrics_address}/metrics" if ep.metrics_address else ""
        typer.echo(
            f"store {ep.store_id} of cluster {ep.cluster_id:#x} serving at {ep.address}{metrics}"
        )
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("received %s: stopping", signal.Signals(signum).name)
                nursery.cancel_scope.cancel()
                break


@server_app.command("start")
def start(
    store_listen: Annotated[
        str | None,
        typer.Option(
            "--store-listen",
            help="host:port for raft, KV and admin traffic (default 127.0.0.1:20160).",
        ),
    ] = None,
    advertise: Annotated[
        str | None,
        typer.Option(
            "--advertise",
            help="host:port other stores and clients should use (default: --store-listen).",
        ),
    ] = None,
    placement: Annotated[
        str | None,
        typer.Option(
            "--placement", help="host:port of the placement service (default 127.0.0.1:2379)."
        ),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir", help="The store's data directory (default multiraft-data/store)."
        ),
    ] = None,
    metrics_listen: Annotated[
        str | None,
        typer.Option(
            "--metrics-listen",
            help='host:port serving /metrics, "" for none (default 127.0.0.1:20180).',
        ),
    ] = None,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="TOML file with the settings (flags override it)."),
    ] = None,
    enable_fault_injection: Annotated[
        bool,
        typer.Option("--enable-fault-injection", help="Test only: honour InjectFaults requests."),
    ] = False,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Start a store in the foreground (stop it with Ctrl-C or SIGTERM)."""
    if log_level not in _LOG_LEVELS:
        _fail(f"--log-level must be one of {', '.join(_LOG_LEVELS)}, not {log_level!r}", 2)
    try:
        config = StoreConfig.load(config_file) if config_file else StoreConfig()
        flags: dict[str, Any] = {
            "store_listen": store_listen,
            "advertise": advertise,
            "placement": placement,
            "data_dir": data_dir,
            "metrics_listen": metrics_listen,
            "fault_injection": True if enable_fault_injection else None,
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
        log.debug("store failed", exc_info=exc)
        first = leaves[0] if leaves else exc
        _fail(
            f"the store failed: {type(first).__name__}: {first} "
            "(run with --log-level debug for details)"
        )
    typer.echo("store stopped")
