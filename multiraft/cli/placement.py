"""``multiraft placement``: run the placement service.

``multiraft placement start --listen 127.0.0.1:2379 --data-dir ./pd`` runs the service in the
foreground until SIGINT or SIGTERM. Settings come from ``--config file.toml`` (its
``[placement]`` table, or its top level), then from the flags, which win. Every failure a user
can cause (a bad address, a port in use, a locked or damaged data directory, a bad config
file) is one line on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from multiraft.cli.service import load_config, os_error_message, run_service, serve_until_signal
from multiraft.settings import ConfigError, PlacementConfig

placement_app = typer.Typer(help="Run the placement service.", no_args_is_help=True)

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
    return os_error_message(exc)


def _announce(endpoints: Any) -> str:
    metrics = endpoints.metrics_address
    return f"placement service of cluster {endpoints.cluster_id:#x} listening on " + (
        f"{endpoints.address}" + (f", metrics at http://{metrics}/metrics" if metrics else "")
    )


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
    schedule: Annotated[
        bool | None,
        typer.Option(
            "--schedule/--no-schedule",
            help="Let the scheduling loop balance and repair regions (default: off; manual "
            "operators and drains work either way).",
            show_default=False,
        ),
    ] = None,
    max_store_down: Annotated[
        float | None,
        typer.Option(
            "--max-store-down-seconds",
            help="Seconds without a heartbeat after which a store's replicas are replaced "
            "(default 1800).",
            show_default=False,
        ),
    ] = None,
    log_level: Annotated[
        str, typer.Option("--log-level", help="debug, info, warning or error.")
    ] = "info",
) -> None:
    """Start the placement service in the foreground (stop it with Ctrl-C or SIGTERM)."""
    config = load_config(
        PlacementConfig,
        PlacementConfig.load,
        config_file,
        {
            "listen": listen,
            "advertise": advertise,
            "data_dir": data_dir,
            "metrics_listen": metrics_listen,
            "schedule_enabled": schedule,
            "max_store_down_seconds": max_store_down,
        },
    )

    async def serve() -> None:
        from multiraft.placement import run_placement

        await serve_until_signal(run_placement, config, _announce)

    run_service("placement service", serve, log_level=log_level, user_message=_user_message)
