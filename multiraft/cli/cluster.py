"""``multiraft cluster``: a local cluster (a placement service and N stores) in one data directory.

``multiraft cluster up`` starts the processes in the background, logs in
``<data-dir>/logs/``, records the endpoints in ``<data-dir>/cluster.json`` (where ``kv``,
``store``, ``region`` and ``bench`` find the cluster), and returns once a write went through.
``cluster status`` shows what runs; ``cluster down`` stops it and keeps the data, which the
next ``cluster up`` on the same directory brings back. See :mod:`multiraft.cluster.local`.

Exit status: 0 success; 1 an error (one ``error: ...`` line on stderr, followed by log lines
when a process failed to start); 2 a malformed argument; 3 ``status`` of a cluster that is
not fully running.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ParamSpec, TypeVar

import typer

from multiraft.cli.common import (
    DEFAULT_DATA_DIR_PATH,
    EXIT_ERROR,
    EXIT_NEGATIVE,
    DataDirOption,
    JsonOption,
    echo_json,
    echo_table,
)
from multiraft.cli.region import route_to_json
from multiraft.cluster.local import DEFAULT_STORES, MAX_STORES, ClusterError, LocalCluster
from multiraft.cluster.spec import ClusterSpec
from multiraft.cluster.status import ClusterStatus, ProcessState
from multiraft.wire import StoreStatusResult
from regions.region import Peer

cluster_app = typer.Typer(
    help="Run a local cluster: a placement service and N stores on this machine.",
    no_args_is_help=True,
)

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _errors(fn: Callable[_P, _T]) -> Callable[_P, _T]:
    """ClusterError becomes ``error: ...`` (plus its detail lines) on stderr, exit 1; so
    does anything unexpected (without a traceback); Ctrl-C exits 130."""

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        try:
            return fn(*args, **kwargs)
        except ClusterError as e:
            typer.echo(f"error: {e.message}", err=True)
            for line in e.details:
                typer.echo(f"  {line}", err=True)
            raise typer.Exit(EXIT_ERROR) from None
        except KeyboardInterrupt:
            typer.echo("interrupted (processes this command started were stopped)", err=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:  # e.g. `| head`: stop quietly
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(EXIT_ERROR) from None
        except Exception as e:  # a bug: still one line, never a traceback
            typer.echo(f"error: unexpected {type(e).__name__}: {e}", err=True)
            raise typer.Exit(EXIT_ERROR) from None

    return wrapper


def _data_dir_args(data_dir: Path) -> str:
    """`` --data-dir DIR`` for the suggested commands, unless DIR is the default."""
    if data_dir.resolve() == DEFAULT_DATA_DIR_PATH.resolve():
        return ""
    text = str(data_dir)
    return f" --data-dir {text!r}" if " " in text else f" --data-dir {text}"


def _metrics_url(address: str) -> str:
    return f"http://{address}/metrics" if address else "-"


def _endpoint_rows(spec: ClusterSpec) -> list[tuple[object, ...]]:
    return [
        (
            f"  {p.name}",
            "-" if p.store_id is None else p.store_id,
            p.address,
            _metrics_url(p.metrics_address),
            p.pid or "-",
        )
        for p in spec.processes
    ]


@cluster_app.command("up")
@_errors
def up(
    stores: Annotated[
        int | None,
        typer.Option(
            "--stores",
            min=1,
            max=MAX_STORES,
            help=f"Stores to run (default {DEFAULT_STORES}, or as many as the cluster has).",
            show_default=False,
        ),
    ] = None,
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    host: Annotated[
        str | None,
        typer.Option(
            "--host", help="Address to listen on (default 127.0.0.1).", show_default=False
        ),
    ] = None,
    base_port: Annotated[
        int | None,
        typer.Option(
            "--base-port",
            min=1,
            max=65535,
            help="Fixed ports: placement P (metrics P+1), store i P+2i (metrics P+2i+1). "
            "Default: free ports chosen by the OS, kept across restarts.",
            show_default=False,
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=1, help="Seconds to wait for the cluster to take a write."),
    ] = 60.0,
    schedule: Annotated[
        bool | None,
        typer.Option(
            "--schedule/--no-schedule",
            help="Let placement balance and repair regions by itself (kept in "
            "<data-dir>/placement.toml; default: as before, off for a new cluster).",
            show_default=False,
        ),
    ] = None,
    max_store_down: Annotated[
        float | None,
        typer.Option(
            "--max-store-down-seconds",
            min=1,
            help="Seconds a store may be silent before its replicas are replaced (kept in "
            "placement.toml; a new local cluster uses 30).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Start a local cluster in the background and wait until it takes writes.

    On a --data-dir whose cluster is down, it brings that cluster back with its data.
    """
    cluster = LocalCluster(data_dir)
    settings = {"schedule_enabled": schedule, "max_store_down_seconds": max_store_down}
    result = cluster.up(stores=stores, host=host, base_port=base_port, timeout=timeout,
                        progress=typer.echo, placement_settings=settings)  # fmt: skip
    spec = result.spec
    cid = f"cluster {spec.cluster_id:#x}" if spec.cluster_id is not None else "the cluster"
    if result.already_running:
        typer.echo(f"{cid} in {spec.root} is already running:")
    else:
        typer.echo(f"{cid} is up in {result.elapsed:.1f} s, data in {spec.root}:")
    echo_table(("  PROCESS", "STORE ID", "ADDRESS", "METRICS", "PID"), _endpoint_rows(spec))
    typer.echo(f"  logs in {spec.root / 'logs'}")
    extra = _data_dir_args(data_dir)
    typer.echo("")
    typer.echo("Next, try:")
    for cmd in ("kv put hello world", "kv get hello", "kv scan", "region list", "store list",
                "bench kv --workload mixed --clients 16 --duration 5", "cluster status",
                "cluster down"):  # fmt: skip
        typer.echo(f"  multiraft {cmd}{extra}")


@cluster_app.command("down")
@_errors
def down(
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0, help="Seconds to wait after SIGTERM before SIGKILL."),
    ] = 10.0,
) -> None:
    """Stop the local cluster's processes (its data stays; `cluster up` brings it back)."""
    result = LocalCluster(data_dir).down(timeout=timeout)
    stopped = {n: o for n, o in result.outcome.items() if o != "not running"}
    for name, outcome in stopped.items():
        typer.echo(f"{name}: {outcome}")
    root = result.spec.root
    if stopped:
        typer.echo(f"the cluster in {root} is down; its data is kept (`multiraft cluster up"
                   f"{_data_dir_args(data_dir)}` starts it again)")  # fmt: skip
    else:
        typer.echo(f"the cluster in {root} was not running")


def _live(state: ProcessState) -> StoreStatusResult | None:
    return state.live if isinstance(state.live, StoreStatusResult) else None


def _status_json(status: ClusterStatus) -> dict[str, Any]:
    spec = status.spec
    by_address = {s.spec.address: s for s in status.processes if s.spec.role == "store"}
    processes = [
        {
            "name": s.spec.name,
            "role": s.spec.role,
            "pid": s.spec.pid if s.running else None,
            "running": s.running,
            "address": s.spec.address,
            "metrics_address": s.spec.metrics_address,
            "store_id": s.spec.store_id,
            "data_dir": str(spec.data_path(s.spec)),
            "log": str(spec.log_path(s.spec)),
            **({"error": s.live} if isinstance(s.live, str) else {}),
        }
        for s in status.processes
    ]
    stores = None
    if status.stores is not None:
        stores = []
        for info in status.stores:
            proc = by_address.get(info.address)
            live = _live(proc) if proc else None
            stores.append({
                "id": info.id,
                "name": proc.spec.name if proc else None,
                "address": info.address,
                "metrics_address": info.metrics_address,
                "state": info.state.name,
                "serving": live is not None,
                "region_count": live.region_count if live else None,
                "leader_count": live.leader_count if live else None,
            })  # fmt: skip
    return {
        "data_dir": str(spec.root),
        "cluster_id": None if spec.cluster_id is None else f"{spec.cluster_id:#x}",
        "state": status.state,
        "placement": spec.placement.address,
        "processes": processes,
        "stores": stores,
        "regions": None if status.regions is None else [
            route_to_json(r, False) for r in status.regions
        ],
        "error": status.error,
    }  # fmt: skip


def _peer_text(p: Peer | None) -> str:
    return "-" if p is None else f"{p.id}@{p.store_id}"


def _print_status(status: ClusterStatus) -> None:
    spec = status.spec
    up = sum(s.running for s in status.processes)
    cid = f"cluster {spec.cluster_id:#x}" if spec.cluster_id is not None else "cluster"
    typer.echo(f"{cid} in {spec.root}: {status.state} ({up} of {len(status.processes)} "
               "processes running)")  # fmt: skip
    typer.echo("")
    echo_table(
        ("PROCESS", "PID", "STATE", "ADDRESS", "METRICS", "LOG"),
        [
            (
                s.spec.name,
                s.spec.pid if s.running else "-",
                "running" if s.running else "stopped",
                s.spec.address,
                _metrics_url(s.spec.metrics_address),
                s.spec.log,
            )
            for s in status.processes
        ],
    )
    if status.stores is not None:
        by_address = {s.spec.address: s for s in status.processes if s.spec.role == "store"}
        rows = []
        for info in status.stores:
            proc = by_address.get(info.address)
            live = _live(proc) if proc else None
            rows.append((
                info.id, proc.spec.name if proc else "-", info.address, info.state.name,
                "yes" if live else "no", live.region_count if live else "-",
                live.leader_count if live else "-",
            ))  # fmt: skip
        typer.echo("")
        echo_table(("STORE", "PROCESS", "ADDRESS", "STATE", "SERVING", "REGIONS", "LEADERS"), rows)
    if status.regions is not None:
        typer.echo("")
        echo_table(
            ("REGION", "START", "END", "EPOCH(conf/ver)", "PEERS(peer@store)", "LEADER"),
            [
                (
                    r.region.id,
                    _key(r.region.start_key, "(min)"),
                    _key(r.region.end_key, "(max)"),
                    f"{r.region.epoch.conf_ver}/{r.region.epoch.version}",
                    ",".join(_peer_text(p) for p in r.region.peers),
                    _peer_text(r.leader),
                )
                for r in status.regions
            ],
        )
    for s in status.processes:
        if isinstance(s.live, str):
            typer.echo(f"{s.spec.name}: not serving: {s.live}", err=True)


def _key(key: bytes, empty: str) -> str:
    from multiraft.cli.common import format_bytes

    return empty if not key else format_bytes(key, False)


@cluster_app.command("status")
@_errors
def status(
    data_dir: DataDirOption = DEFAULT_DATA_DIR_PATH,
    as_json: JsonOption = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.1, help="Seconds each question may take.")
    ] = 5.0,
) -> None:
    """Show the local cluster: processes, stores and regions with their leaders.

    Exit status 0 if every process runs and answers, 3 if some are stopped, 1 on an error.
    """
    result = LocalCluster(data_dir).status(timeout=timeout)
    if as_json:
        echo_json(_status_json(result))
    else:
        _print_status(result)
    if result.state != "running":
        raise typer.Exit(EXIT_NEGATIVE)
    if result.error is not None:
        typer.echo(f"error: {result.error}", err=True)
        raise typer.Exit(EXIT_ERROR)
