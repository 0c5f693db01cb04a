"""A store process: the engine, its replicas, the ready loop, the transport and placement.

Theory of operation
-------------------
Startup (:func:`run_store`):

1. open the data directory's :class:`~multiraft.storage.Engine` (a second process
   on the same directory gets a clear :class:`StoreStartError`);
2. load the :class:`~regions.StoreIdent`, or, for a new directory, ask placement
   for the cluster id and a fresh store id and write it once (a directory that
   belongs to another cluster than the placement service refuses to start);
3. recover every region from its records (``multiraft.storage.recovery``):
   initialized ones become replicas whose RawNode starts at the persisted
   applied index, tombstones and uninitialized ones are remembered by the router;
4. start the transport, the listener, ``/metrics``, register the store's
   address with placement, then run the ready loop, the ticker, the snapshot
   sender and the placement heartbeats until cancelled.

:class:`Store` is the part that does not depend on the network: tests give it
an in-memory transport and a fake placement, and drive several stores in one
trio run. One timer task ticks every replica (through the inbox); there is no
task per region.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import trio
from prometheus_client import CollectorRegistry

from multiraft import __version__
from multiraft.metrics import StoreServerMetrics, serve_metrics
from multiraft.placement.client import PlacementClient
from multiraft.placement.errors import PlacementClientError
from multiraft.raft import SnapshotStatus
from multiraft.settings import StoreConfig, format_address, parse_address
from multiraft.storage.engine import DataDirLocked, Engine, EngineError
from multiraft.storage.raft_storage import RaftStorage
from multiraft.storage.recovery import RecoveryError, bootstrap_store, load_store_ident, recover
from multiraft.storage.write_batch import StorageWriter
from multiraft.store.admin_propose import propose_admin
from multiraft.store.cleanup import RangeCleaner, ranges_to_clean
from multiraft.store.inbox import Inbox, SnapshotReportItem, UnreachableItem
from multiraft.store.kv_service import KvService
from multiraft.store.log_gc import LogGc, LogGcConfig
from multiraft.store.placement_loop import PlacementApi, PlacementLoop
from multiraft.store.ready_loop import RaftTransportLike, ReadyLoop
from multiraft.store.replica import RaftSettings, Replica
from multiraft.store.router import Router
from multiraft.store.snapshots import SnapshotSender, SnapshotTransport, disk_snapshot_producer
from multiraft.store.split_check import SplitChecker
from multiraft.store.step_exec import StepExecutor
from multiraft.transport import RaftTransport, serve_store
from multiraft.transport.faults import FaultInjector
from multiraft.wire.messages import RaftEnvelope
from multiraft.wire.placement_messages import StoreInfo, StoreState
from multiraft.wire.records import RecordCorrupted
from regions.local_state import PeerState, RegionLocalState, StoreIdent
from regions.split import SplitPolicy

__all__ = [
    "Store",
    "StoreEndpoints",
    "StoreStartError",
    "StoreTransport",
    "ensure_store_ident",
    "open_engine",
    "run_store",
    "unreachable_reporter",
]

log = logging.getLogger(__name__)


class StoreStartError(Exception):
    """The store cannot start; the message is one line meant for the operator."""


class StoreTransport(RaftTransportLike, SnapshotTransport, Protocol):
    """What a store needs of its outbound transport."""


@dataclass(frozen=True, slots=True)
class StoreEndpoints:
    """What :func:`run_store` reports once it serves (``task_status.started``)."""

    store_id: int
    cluster_id: int
    address: str
    metrics_address: str


def settings_from(config: StoreConfig) -> RaftSettings:
    return RaftSettings(
        election_tick=config.election_tick,
        heartbeat_tick=config.heartbeat_tick,
        tick_interval=config.raft_tick_interval,
        max_size_per_msg=config.max_size_per_msg,
        max_inflight_msgs=config.max_inflight_msgs,
    )


def unreachable_reporter(inbox: Inbox) -> Callable[[int, list[RaftEnvelope]], None]:
    """The transport's ``on_unreachable`` callback: post the drop to the ready loop."""

    def report(store_id: int, envelopes: list[RaftEnvelope]) -> None:
        if envelopes:
            inbox.put(UnreachableItem(store_id, envelopes))

    return report


def open_engine(config: StoreConfig) -> Engine:
    """Open the store's data directory.

    Raises:
        StoreStartError: locked by another process, another format, or unusable.
    """
    try:
        return Engine.open(config.data_dir, sync=config.sync)
    except DataDirLocked as exc:
        raise StoreStartError(str(exc)) from None
    except (EngineError, OSError) as exc:
        raise StoreStartError(f"cannot open data directory {config.data_dir}: {exc}") from None


async def ensure_store_ident(engine: Engine, placement: object) -> StoreIdent:
    """The store's identity: loaded, or allocated from placement and written once.

    ``placement`` needs ``cluster_info()`` and ``alloc_ids(n)`` (PlacementClient).

    Raises:
        StoreStartError: the directory belongs to another cluster than placement's.
    """
    info = await placement.cluster_info()  # type: ignore[attr-defined]
    ident = load_store_ident(engine)
    if ident is not None:
        if ident.cluster_id != info.cluster_id:
            raise StoreStartError(
                f"data directory {engine.path} belongs to cluster {ident.cluster_id:#x}, but the "
                f"placement service is cluster {info.cluster_id:#x}"
            )
        return ident
    ids = await placement.alloc_ids(1)  # type: ignore[attr-defined]
    ident = StoreIdent(info.cluster_id, ids.first)
    try:
        bootstrap_store(engine, ident)
    except RecoveryError as exc:
        raise StoreStartError(str(exc)) from None
    log.info("new store %d in cluster %#x", ident.store_id, ident.cluster_id)
    return ident


class Store:
    """One store's replicas and loops, over a given engine, transport and placement."""

    def __init__(
        self,
        config: StoreConfig,
        engine: Engine,
        ident: StoreIdent,
        transport: StoreTransport,
        *,
        inbox: Inbox | None = None,
        placement: PlacementApi | None = None,
        metrics: StoreServerMetrics | None = None,
        faults: FaultInjector | None = None,
        address: str = "",
    ) -> None:
        self.config = config
        self.engine = engine
        self.ident = ident
        self.store_id = ident.store_id
        self.address = address
        self.transport = transport
        self.metrics = metrics
        self.settings = settings_from(config)
        self.inbox = inbox or Inbox(max_requests=config.max_pending_requests,
                                    max_messages=config.max_pending_messages)  # fmt: skip
        self.router = Router()
        self.writer = StorageWriter(engine)
        self.snapshots = SnapshotSender(
            engine, transport, self._report_snapshot, limit=config.max_sending_snapshots,
            metrics=metrics.raft if metrics is not None else None,
        )  # fmt: skip
        self.loop = ReadyLoop(
            store_id=self.store_id, engine=engine, writer=self.writer, router=self.router,
            transport=transport, settings=self.settings, inbox=self.inbox,
            snapshots=self.snapshots, metrics=metrics, lease_reads=config.lease_reads,
        )  # fmt: skip
        self.steps = StepExecutor(self.loop, placement, timeout=config.request_timeout)
        policy = SplitPolicy.from_split_size(config.region_split_size)
        gc_cfg = LogGcConfig.from_split_size(config.region_split_size)
        raft_metrics = metrics.raft if metrics is not None else None
        self.log_gc = LogGc(self.router, engine, self.writer,
                            partial(propose_admin, self.inbox, timeout=gc_cfg.propose_timeout),
                            gc_cfg, metrics=raft_metrics)  # fmt: skip
        self.loop.log_gc = self.log_gc
        self.cleaner = RangeCleaner(engine, self.writer, self.router,
                                    metrics=metrics.storage if metrics is not None else None)  # fmt: skip
        self.loop.cleaner = self.cleaner
        self.split_checker = SplitChecker(
            self.router, engine, policy,
            lambda r, keys: self.steps.split(r.region_id, r.region.epoch, keys),
            interval=config.split_check_interval, metrics=raft_metrics,
        )  # fmt: skip
        self.service = KvService(
            self.loop, address=lambda: self.address, request_timeout=config.request_timeout,
            steps=self.steps,
            max_entry_bytes=config.max_frame_size // 2, max_snapshot_bytes=config.max_snapshot_bytes,
            max_receiving_snapshots=config.max_receiving_snapshots,
            faults=faults, metrics=metrics,
        )  # fmt: skip
        self.placement_loop = (
            PlacementLoop(
                self.loop,
                placement,
                steps=self.steps,
                data_dir=config.data_dir,
                store_heartbeat_interval=config.store_heartbeat_interval,
                region_heartbeat_interval=config.region_heartbeat_interval,
            )
            if placement is not None
            else None
        )
        if metrics is not None:
            metrics.watch_regions(lambda: (r.summary() for r in self.router))
        self.recover()

    def _report_snapshot(self, region_id: int, peer_id: int, status: SnapshotStatus) -> None:
        self.inbox.put(SnapshotReportItem(region_id, peer_id, status))

    def recover(self) -> None:
        """Rebuild the router from the engine (startup).

        Raises:
            StoreStartError: damaged records.
        """
        producer = disk_snapshot_producer(self.engine)
        try:
            recovered = recover(self.engine)
        except (RecoveryError, RecordCorrupted) as exc:
            raise StoreStartError(f"cannot recover {self.engine.path}: {exc}") from None
        for rec in recovered:
            rid = rec.region_id
            if rec.tombstone:
                self.router.tombstones[rid] = RegionLocalState(PeerState.Tombstone, rec.region)
                continue
            if not rec.initialized:
                self.router.dormant[rid] = rec
                continue
            peer = rec.region.peer_on_store(self.store_id)
            if peer is None:
                log.warning(
                    "region %d on disk has no peer on store %d; ignored", rid, self.store_id
                )
                continue
            storage = RaftStorage.from_recovered(self.engine, rec, snapshot_producer=producer)
            self.router.add(Replica(peer, rec.region, storage, self.settings))
        for start, end in ranges_to_clean(self.engine, self.router):
            self.cleaner.schedule(0, start, end)  # data no live region owns (a crash mid-cleanup)
        log.info("store %d: recovered %d regions", self.store_id, len(self.router))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run the ready loop, the ticker, the snapshot sender and the heartbeats until cancelled."""
        async with trio.open_nursery() as nursery:
            await nursery.start(self.snapshots.run)
            await nursery.start(self.service.snapshot_receiver.run)
            await nursery.start(self.loop.run)
            await nursery.start(self.steps.run)
            await nursery.start(self.log_gc.run)
            await nursery.start(self.cleaner.run)
            await nursery.start(self.split_checker.run)
            nursery.start_soon(self._ticker)
            if self.placement_loop is not None:
                await nursery.start(self.placement_loop.run)
            task_status.started()

    async def _ticker(self) -> None:
        interval = self.config.raft_tick_interval
        deadline = trio.current_time() + interval
        while True:
            await trio.sleep_until(deadline)
            self.inbox.tick()
            deadline += interval
            now = trio.current_time()
            if deadline < now:  # the loop fell behind: do not burst the missed ticks
                deadline = now + interval

    def replicas(self) -> list[Replica]:
        return list(self.router)


class _Resolver:
    """Store id -> address through placement, cached; a miss asks again next time."""

    def __init__(self, placement: object) -> None:
        self._placement = placement
        self._cache: dict[int, str] = {}

    async def resolve(self, store_id: int) -> str:
        try:
            info = await self._placement.get_store(store_id)  # type: ignore[attr-defined]
        except Exception:
            cached = self._cache.get(store_id)
            if cached is None:
                raise
            return cached
        self._cache[store_id] = info.address
        return str(info.address)


async def run_store(
    config: StoreConfig, *, task_status: trio.TaskStatus[StoreEndpoints] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run a store process until cancelled (see the module docstring).

    ``task_status.started`` receives the store's :class:`StoreEndpoints` once it serves
    (its listener is bound and its address registered with placement).

    Raises:
        StoreStartError: the data directory is locked or damaged, it belongs to another
            cluster, placement cannot be reached at startup, or a port cannot be bound.
    """
    config.validate()
    placement = PlacementClient(config.placement, timeout=config.placement_timeout)
    async with placement:
        engine = open_engine(config)
        try:
            try:
                ident = await ensure_store_ident(engine, placement)
            except PlacementClientError as exc:
                raise StoreStartError(
                    f"cannot reach placement at {config.placement}: {exc}"
                ) from None
            await _serve(config, engine, ident, placement, task_status)
        finally:
            engine.close()


async def _serve(
    config: StoreConfig,
    engine: Engine,
    ident: StoreIdent,
    placement: PlacementClient,
    task_status: trio.TaskStatus[StoreEndpoints],
) -> None:
    registry = CollectorRegistry()
    metrics = StoreServerMetrics(registry)
    faults = FaultInjector() if config.fault_injection else None
    inbox = Inbox(
        max_requests=config.max_pending_requests, max_messages=config.max_pending_messages
    )
    resolver = _Resolver(placement)
    transport = RaftTransport(
        ident.store_id, ident.cluster_id, resolver.resolve, unreachable_reporter(inbox),
        faults=faults, metrics=metrics.transport, max_frame_size=config.max_frame_size,
        max_concurrent_snapshots=config.max_sending_snapshots,
    )  # fmt: skip
    store = Store(config, engine, ident, transport, inbox=inbox, placement=placement,
                  metrics=metrics, faults=faults)  # fmt: skip
    host, port = parse_address(config.store_listen)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run)
        try:
            bound = await nursery.start(partial(
                serve_store, store.service, host=host, port=port, cluster_id=ident.cluster_id,
                store_id=ident.store_id, max_frame_size=config.max_frame_size, faults=faults,
                metrics=metrics.transport,
            ))  # fmt: skip
        except OSError as exc:
            raise StoreStartError(
                f"cannot listen on {config.store_listen}: {exc.strerror or exc}"
            ) from None
        store.address = config.advertise_address(bound)
        metrics_address = ""
        if config.metrics_listen:
            mhost, mport = parse_address(config.metrics_listen)
            try:
                listeners = await nursery.start(serve_metrics, registry, mhost, mport)
            except OSError as exc:
                raise StoreStartError(
                    f"cannot listen on {config.metrics_listen}: {exc.strerror or exc}"
                ) from None
            metrics_address = format_address(mhost, listeners[0].socket.getsockname()[1])
        info = StoreInfo(ident.store_id, store.address, metrics_address, StoreState.Up, __version__)
        try:
            await placement.put_store(info)
        except PlacementClientError as exc:
            raise StoreStartError(
                f"cannot register with placement at {config.placement}: {exc}"
            ) from None
        await nursery.start(store.run)
        log.info(
            "store %d serving at %s (cluster %#x)", ident.store_id, store.address, ident.cluster_id
        )
        task_status.started(
            StoreEndpoints(ident.store_id, ident.cluster_id, store.address, metrics_address)
        )
