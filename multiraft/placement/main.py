"""Running the placement service process: metadata, listener, ``/metrics``, housekeeping.

:func:`run_placement` is what ``multiraft placement start`` runs inside ``trio.run``,
and what tests start in a nursery::

    async with trio.open_nursery() as nursery:
        endpoints = await nursery.start(run_placement, PlacementConfig(
            listen="127.0.0.1:0", metrics_listen="127.0.0.1:0", data_dir=tmp_path))
        client = PlacementClient(endpoints.address)

Startup errors are raised as themselves, before ``task_status.started``:
:class:`ListenError` (port in use, address not available), ``DataDirLocked``
(another service has the directory), ``MetaCorrupted``, ``ConfigError``.
"""

from __future__ import annotations

import errno
import logging
from dataclasses import dataclass
from typing import Final

import trio
from prometheus_client import CollectorRegistry

from multiraft.metrics import PlacementServerMetrics, serve_metrics
from multiraft.placement.cluster import Cluster
from multiraft.placement.scheduler import SchedulerConfig
from multiraft.placement.service import PlacementServer, PlacementServerLimits
from multiraft.settings import PlacementConfig, format_address, parse_address
from regions.scheduling import OperatorTimeouts

__all__ = ["ListenError", "PlacementEndpoints", "run_placement", "scheduler_config"]

log = logging.getLogger(__name__)

#: Seconds between two refreshes of the store gauges (disconnected/down detection).
HOUSEKEEPING_INTERVAL: Final = 5.0


class ListenError(OSError):
    """A listener could not be opened; the message names the address and the reason."""


@dataclass(frozen=True, slots=True)
class PlacementEndpoints:
    """Where a started service listens (what ``nursery.start(run_placement, ...)`` returns)."""

    #: The address to give stores and clients (the advertised one).
    address: str
    #: The port the placement listener is bound to.
    port: int
    #: The ``/metrics`` address, or "" without a metrics listener.
    metrics_address: str
    cluster_id: int


async def _open_listeners(address: str, what: str) -> list[trio.SocketListener]:
    host, port = parse_address(address, what=what)
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as e:
        reason = {
            errno.EADDRINUSE: "the address is already in use",
            errno.EADDRNOTAVAIL: "the address is not available on this machine",
            errno.EACCES: "permission denied",
        }.get(e.errno or 0, e.strerror or str(e))
        raise ListenError(e.errno or 0, f"cannot listen on {address} ({what}): {reason}") from e


def scheduler_config(config: PlacementConfig) -> SchedulerConfig:
    """The scheduling loop's settings from the service's."""
    return SchedulerConfig(
        enabled=config.schedule_enabled,
        max_replicas=config.bootstrap_replicas,
        store_limit=config.schedule_store_limit,
        max_store_down_seconds=config.max_store_down_seconds,
        timeouts=OperatorTimeouts(
            fast_step=config.operator_step_seconds,
            slow_step=config.operator_snapshot_step_seconds,
        ),
    )


async def run_placement(
    config: PlacementConfig,
    *,
    registry: CollectorRegistry | None = None,
    limits: PlacementServerLimits | None = None,
    task_status: trio.TaskStatus[PlacementEndpoints] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the placement service until cancelled.

    Args:
        config: validated here.
        registry: where the metrics go (default: a fresh registry with the process
            collectors).
        limits: the server's per-connection bounds (default: :class:`PlacementServerLimits`).
        task_status: gets a :class:`PlacementEndpoints` once everything listens.
    """
    config.validate()
    metrics = PlacementServerMetrics(
        registry if registry is not None else CollectorRegistry(),
        process_collectors=registry is None,
    )
    cluster = await Cluster.open(
        config.data_dir,
        bootstrap_replicas=config.bootstrap_replicas,
        metrics=metrics.placement,
        scheduler=scheduler_config(config),
    )
    listeners: list[trio.SocketListener] = []
    try:
        engine = cluster.meta_engine
        metrics.storage.map_size_bytes.set_function(engine.map_size)
        metrics.storage.used_bytes.set_function(engine.size)
        listeners = await _open_listeners(config.listen, "placement listen address")
        metrics_listeners: list[trio.SocketListener] = []
        if config.metrics_listen:
            metrics_listeners = await _open_listeners(config.metrics_listen, "metrics address")
        port = listeners[0].socket.getsockname()[1]
        advertise = config.advertise_address(port)
        metrics_address = ""
        server = PlacementServer(cluster, advertise=advertise, limits=limits)
        async with trio.open_nursery() as nursery:
            await nursery.start(server.serve_listeners, listeners)
            if metrics_listeners:
                mhost, _ = parse_address(config.metrics_listen)
                mport = metrics_listeners[0].socket.getsockname()[1]
                # serve_metrics binds by itself: hand the port over (it is free again at
                # once; holding it until now made a conflict fail before anything started).
                for ml in metrics_listeners:
                    await ml.aclose()
                await nursery.start(serve_metrics, metrics.registry, mhost, mport)
                metrics_address = format_address(mhost, mport)
            nursery.start_soon(_housekeeping, cluster)
            nursery.start_soon(_scheduling, cluster, config.schedule_interval)
            log.info(
                "placement service of cluster %d listening on %s (advertised as %s)%s",
                cluster.cluster_id,
                config.listen,
                advertise,
                f", metrics on {metrics_address}" if metrics_address else "",
            )
            task_status.started(
                PlacementEndpoints(advertise, port, metrics_address, cluster.cluster_id)
            )
    finally:
        for listener in listeners:
            with trio.CancelScope(shield=True):
                await listener.aclose()
        cluster.close()


#: Seconds between an operator's end and the early scheduling pass it triggers.
EARLY_PASS_DELAY = 0.05


async def _housekeeping(cluster: Cluster) -> None:
    while True:
        await trio.sleep(HOUSEKEEPING_INTERVAL)
        cluster.refresh_metrics()


async def _scheduling(cluster: Cluster, interval: float) -> None:
    """The scheduling loop: one pass every ``interval`` seconds, or sooner once an operator
    ended (its store slot is free: a drain of 100 regions otherwise advanced only at the
    pass rate); a failed pass is logged."""
    ended = trio.Event()

    def wake() -> None:
        ended.set()

    cluster.operators.on_finish = wake
    while True:
        with trio.move_on_after(interval):
            await ended.wait()
            await trio.sleep(min(interval, EARLY_PASS_DELAY))  # let several endings batch
        ended = trio.Event()
        try:
            await cluster.schedule_tick()
        except Exception:
            log.exception("scheduling pass failed")
