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

from pathlib import Path
from typing import Annotated, Any

import typer

from multiraft.cli.service import load_config, os_error_message, run_service, serve_until_signal
from multiraft.settings import ConfigError, StoreConfig

server_app = typer.Typer(help="Run a store server.", no_args_is_help=True)

def _user_message(exc: BaseException) -> str | None:
    """A one-line explanation of a failure a user can fix, or None for an unexpected one."""
    from multiraft.placement.errors import PlacementClientError
    from multiraft.storage import IncompatibleFormat, StorageFull
    from multiraft.store import StoreStartError
    from multiraft.store.placement_loop import StoreRetired

    if isinstance(exc, StoreStartError | StoreRetired | ConfigError | IncompatibleFormat | StorageFull):
        return str(exc)
    if isinstance(exc, PlacementClientError):
        return f"placement: {exc}"
    return os_error_message(exc)


def _announce(ep: Any) -> str:
    metrics = f", metrics at http://{ep.metrics_address}/metrics" if ep.metrics_address else ""
    return f"store {ep.store_id} of cluster {ep.cluster_id:#x} serving at {ep.address}{metrics}"


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
    region_split_size: Annotated[
        int | None,
        typer.Option(
            "--region-split-size", min=1,
            help="Bytes: regions split into pieces of about this size (default 96 MiB; "
            "`cluster up` uses 1 MiB).",
        ),
    ] = None,
    split_check_interval: Annotated[
        float | None,
        typer.Option(
            "--split-check-interval", min=0.01,
            help="Seconds between the leaders' split checks (default 10).",
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
    config = load_config(
        StoreConfig,
        StoreConfig.load,
        config_file,
        {
            "store_listen": store_listen,
            "advertise": advertise,
            "placement": placement,
            "data_dir": data_dir,
            "metrics_listen": metrics_listen,
            "fault_injection": True if enable_fault_injection else None,
            "region_split_size": region_split_size,
            "split_check_interval": split_check_interval,
        },
    )

    async def serve() -> None:
        from multiraft.store import run_store

        await serve_until_signal(run_store, config, _announce)

    run_service("store", serve, log_level=log_level, user_message=_user_message)
