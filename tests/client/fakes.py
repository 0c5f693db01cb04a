"""A fake multiraft cluster for client tests: placement and stores without Raft.

:class:`FakeCluster` is the truth: regions (with peers on stores, epochs and a leader
each) and one key-value map. Stores answer KV requests from it the way real stores do
(``RegionNotFound``, ``EpochNotMatch`` with the current regions, ``NotLeader`` with a
hint, ``KeyNotInRegion``), and tests can script errors and faults.

It is served two ways:

* in memory, at the level of the client's seams: :class:`FakePlacement` (the
  ``PlacementApi``) and :class:`FakeNetwork` (the ``StoreConnector``; its connections can
  refuse, hang, or break after a request is applied). Works under ``MockClock``.
* over real sockets with the real wire protocol: :func:`serve_fake_cluster` runs the real
  :class:`~multiraft.placement.PlacementServer` (with :class:`FakePlacement` as its
  ``Cluster``) and one real :class:`~multiraft.transport.StoreServer` per store (with
  :class:`FakeStoreHandler`); the client then uses the real ``PlacementClient`` and
  ``RpcConnection``. :class:`BackgroundCluster` does that in a thread of its own, for
  synchronous tests (CLI, SyncClient).
"""

from __future__ import annotations

import bisect
import queue
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any

import trio

from multiraft.placement import PlacementServer
from multiraft.placement.errors import PlacementFailure, PlacementRequestError, PlacementUnavailable
from multiraft.transport import ConnectFailed, ConnectionLost, RpcTimeout, StoreServer
from multiraft.wire import (
    AdminRequest,
    AdminResponse,
    BatchPut,
    Cas,
    CasResult,
    Delete,
    EpochNotMatch,
    Get,
    GetResult,
    Hello,
    Internal,
    KeyNotInRegion,
    KvRequest,
    KvResponse,
    NotLeader,
    Put,
    RaftBatch,
    ReadMode,
    RegionNotFound,
    RequestError,
    Scan,
    ScanResult,
    SnapshotAck,
    SnapshotAckStatus,
    SnapshotChunk,
    WriteOk,
)
from multiraft.wire.placement_messages import (
    ClusterInfo,
    GetAllStores,
    GetClusterInfo,
    GetRegion,
    GetRegionById,
    GetStore,
    PlacementBody,
    PlacementErrorCode,
    PlacementResult,
    RegionRoute,
    RegionRoutes,
    ScanRegions,
    StoreInfo,
    StoreList,
)
from regions.region import Peer, Region, RegionEpoch

CLUSTER_ID = 0x5EED


@dataclass
class Injection:
    """Answer ``error`` instead of serving, for requests matching ``when``, ``times`` times."""

    error: RequestError
    when: Callable[[int, KvRequest], bool]
    times: int = 1
    #: Serve the request (apply it) before answering the error: an unknown outcome.
    apply_first: bool = False


def _in_range(key: bytes, start: bytes, end: bytes) -> bool:
    return start <= key and (not end or key < end)


@dataclass
class FakeCluster:
    """The truth of a fake cluster of ``n_stores`` stores, every region on every store."""

    n_stores: int = 3
    regions: dict[int, Region] = field(default_factory=dict)
    leaders: dict[int, Peer | None] = field(default_factory=dict)
    data: dict[bytes, bytes] = field(default_factory=dict)
    stores: dict[int, StoreInfo] = field(default_factory=dict)
    #: Every KV request a store received: (store id, request).
    requests: list[tuple[int, KvRequest]] = field(default_factory=list)
    injections: list[Injection] = field(default_factory=list)
    #: What placement answers; None: the truth. See :meth:`freeze_placement`.
    placement_view: dict[int, RegionRoute] | None = None
    bootstrapped: bool = True
    _next_id: int = 100

    def __post_init__(self) -> None:
        if not self.regions:
            peers = [Peer(10 + s, s) for s in range(1, self.n_stores + 1)]
            self.regions[1] = Region(1, b"", b"", RegionEpoch(1, 1), peers)
            self.leaders[1] = peers[0]
        for s in range(1, self.n_stores + 1):
            self.stores.setdefault(s, StoreInfo(s, f"fake-store-{s}:1"))

    # -- changing the truth ------------------------------------------------------------------

    def region_for(self, key: bytes) -> Region:
        for r in self.regions.values():
            if r.contains(key):
                return r
        raise AssertionError(f"no region holds {key!r}")

    def split(self, key: bytes) -> tuple[Region, Region]:
        """Split the region holding ``key`` at ``key``; the right half is a new region."""
        parent = self.region_for(key)
        assert key > parent.start_key
        epoch = RegionEpoch(parent.epoch.conf_ver, parent.epoch.version + 1)
        self._next_id += 10
        rid = self._next_id
        right_peers = [Peer(rid + i + 1, p.store_id, p.role) for i, p in enumerate(parent.peers)]
        left = Region(parent.id, parent.start_key, key, epoch, list(parent.peers))
        right = Region(rid, key, parent.end_key, epoch, right_peers)
        self.regions[left.id] = left
        self.regions[right.id] = right
        leader = self.leaders[parent.id]
        self.leaders[right.id] = None if leader is None else right.peer_on_store(leader.store_id)
        return left, right

    def set_leader(self, region_id: int, store_id: int | None) -> None:
        r = self.regions[region_id]
        self.leaders[region_id] = None if store_id is None else r.peer_on_store(store_id)

    def set_all_leaders(self, store_id: int | None) -> None:
        for rid in self.regions:
            self.set_leader(rid, store_id)

    def freeze_placement(self) -> None:
        """From now on placement answers from a copy of today's truth (it lags)."""
        self.placement_view = {rid: self.route(rid) for rid in self.regions}

    def thaw_placement(self) -> None:
        self.placement_view = None

    def route(self, region_id: int) -> RegionRoute:
        return RegionRoute(self.regions[region_id], self.leaders[region_id])

    def inject(
        self,
        error: RequestError,
        *,
        store: int | None = None,
        op: type | None = None,
        region: int | None = None,
        times: int = 1,
        apply_first: bool = False,
    ) -> None:
        """Answer ``error`` to the next ``times`` requests (to ``store``, of ``op``, for
        ``region``)."""

        def when(sid: int, req: KvRequest) -> bool:
            return (
                (store is None or sid == store)
                and (op is None or isinstance(req.op, op))
                and (region is None or req.region_id == region)
            )

        self.injections.append(Injection(error, when, times, apply_first))

    # -- placement's answers ---------------------------------------------------------------

    def placement_routes(self) -> list[RegionRoute]:
        view = self.placement_view
        routes = list(view.values()) if view is not None else [self.route(r) for r in self.regions]
        return sorted(routes, key=lambda r: r.region.start_key)

    def placement_get_region(self, key: bytes) -> RegionRoute | None:
        if not self.bootstrapped:
            raise PlacementFailure(PlacementErrorCode.NotBootstrapped, "not bootstrapped")
        for r in self.placement_routes():
            if r.region.contains(key):
                return r
        return None

    def placement_get_store(self, store_id: int) -> StoreInfo:
        s = self.stores.get(store_id)
        if s is None:
            raise PlacementFailure(PlacementErrorCode.StoreNotFound, f"store {store_id}")
        return s

    def placement_scan(self, start: bytes, end: bytes, limit: int) -> list[RegionRoute]:
        out = [
            r
            for r in self.placement_routes()
            if (not end or r.region.start_key < end)
            and (not r.region.end_key or start < r.region.end_key)
        ]
        return out[:limit] if limit else out

    # -- a store's answer ------------------------------------------------------------------

    def handle(self, store_id: int, req: KvRequest) -> KvResponse:
        self.requests.append((store_id, req))
        for inj in list(self.injections):
            if inj.when(store_id, req):
                inj.times -= 1
                if inj.times <= 0:
                    self.injections.remove(inj)
                if inj.apply_first:
                    self._serve(store_id, req)
                return KvResponse(req.request_id, inj.error)
        return KvResponse(req.request_id, self._serve(store_id, req))

    def _serve(self, store_id: int, req: KvRequest) -> Any:
        region = self.regions.get(req.region_id)
        if region is None or region.peer_on_store(store_id) is None:
            return RegionNotFound(req.region_id)
        if req.epoch != region.epoch:
            current = sorted(self.regions.values(), key=lambda r: r.start_key)
            return EpochNotMatch(current)
        leader = self.leaders[region.id]
        if req.read_mode != ReadMode.Stale and (leader is None or leader.store_id != store_id):
            return NotLeader(region.id, leader)
        op = req.op
        keys: list[bytes]
        match op:
            case Get(key) | Put(key, _) | Delete(key) | Cas(key, _, _):
                keys = [key]
            case BatchPut(pairs):
                keys = [k for k, _ in pairs]
            case Scan(start, end, _):
                keys = [start]
                if region.end_key and (not end or end > region.end_key):
                    return KeyNotInRegion(end, region.id, region.start_key, region.end_key)
        for k in keys:
            if not region.contains(k):
                return KeyNotInRegion(k, region.id, region.start_key, region.end_key)
        match op:
            case Get(key):
                return GetResult(self.data.get(key))
            case Put(key, value):
                self.data[key] = value
                return WriteOk()
            case Delete(key):
                self.data.pop(key, None)
                return WriteOk()
            case Cas(key, expected, new):
                previous = self.data.get(key)
                if previous != expected:
                    return CasResult(False, previous)
                if new is None:
                    self.data.pop(key, None)
                else:
                    self.data[key] = new
                return CasResult(True, previous)
            case BatchPut(pairs):
                self.data.update(pairs)
                return WriteOk()
            case Scan(start, end, limit):
                ks = sorted(self.data)
                i = bisect.bisect_left(ks, start)
                out: list[tuple[bytes, bytes]] = []
                while i < len(ks) and len(out) < limit and _in_range(ks[i], start, end):
                    out.append((ks[i], self.data[ks[i]]))
                    i += 1
                return ScanResult(out)

    def ops_to(self, store_id: int | None = None) -> list[str]:
        """``"<store>:<Op>"`` for every request received (for assertions)."""
        return [
            f"{sid}:{type(req.op).__name__}"
            for sid, req in self.requests
            if store_id is None or sid == store_id
        ]


# -- in memory -------------------------------------------------------------------------------


class FakePlacement:
    """The placement service of a :class:`FakeCluster`: the client's ``PlacementApi`` in
    memory, and the ``Cluster`` a real :class:`PlacementServer` serves."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.cluster_id = CLUSTER_ID
        #: Raise PlacementUnavailable on every in-memory call.
        self.unavailable = False
        self.calls: list[str] = []

    # the server side (duck-typed placement.Cluster)
    async def handle(self, body: PlacementBody) -> PlacementResult:
        self.calls.append(type(body).__name__)
        c = self.cluster
        match body:
            case GetClusterInfo():
                return ClusterInfo(self.cluster_id, c.bootstrapped)
            case GetStore(store_id):
                return c.placement_get_store(store_id)
            case GetAllStores():
                return StoreList(sorted(c.stores.values(), key=lambda s: s.id))
            case GetRegion(key):
                return c.placement_get_region(key)
            case GetRegionById(region_id):
                return c.route(region_id) if region_id in c.regions else None
            case ScanRegions(start, end, limit):
                return RegionRoutes(c.placement_scan(start, end, limit))
        raise PlacementFailure(PlacementErrorCode.InvalidArgument, type(body).__name__)

    # the client side (PlacementApi)
    async def _call(self, body: PlacementBody) -> Any:
        await trio.lowlevel.checkpoint()
        if self.unavailable:
            raise PlacementUnavailable("the placement service at fake:1 did not answer")
        try:
            return await self.handle(body)
        except PlacementFailure as f:
            raise PlacementRequestError(f.code, f.message) from None

    async def cluster_info(self) -> ClusterInfo:
        result: ClusterInfo = await self._call(GetClusterInfo())
        return result

    async def get_region(self, key: bytes) -> RegionRoute | None:
        result: RegionRoute | None = await self._call(GetRegion(key))
        return result

    async def get_store(self, store_id: int) -> StoreInfo:
        result: StoreInfo = await self._call(GetStore(store_id))
        return result

    async def get_all_stores(self) -> list[StoreInfo]:
        result: StoreList = await self._call(GetAllStores())
        return result.stores

    async def scan_regions(self, start_key: bytes, end_key: bytes, limit: int) -> list[RegionRoute]:
        result: RegionRoutes = await self._call(ScanRegions(start_key, end_key, limit))
        return result.routes

    async def aclose(self) -> None:
        pass


class FakeConnection:
    """An in-memory store connection (the client's ``StoreConnection``)."""

    def __init__(self, network: FakeNetwork, store_id: int) -> None:
        self._network = network
        self.store_id = store_id
        self.peer = Hello(store_id, CLUSTER_ID, network.cluster.stores[store_id].address)
        self.closed = False

    async def kv(self, req: KvRequest, *, timeout: float) -> KvResponse:  # noqa: ASYNC109
        net = self._network
        if self.closed:
            raise ConnectionLost(f"connection to store {self.store_id} closed")
        await trio.lowlevel.checkpoint()
        if self.store_id in net.hang:
            with trio.move_on_after(timeout):
                await trio.sleep_forever()
            raise RpcTimeout(f"no response from store {self.store_id} within {timeout}s")
        resp = net.cluster.handle(self.store_id, req)
        if self.store_id in net.lose_after_apply:
            self.closed = True
            raise ConnectionLost(f"connection to store {self.store_id} broke")
        return resp

    async def aclose(self) -> None:
        self.closed = True


class FakeNetwork:
    """Opens :class:`FakeConnection` objects (the client's ``StoreConnector``)."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        #: Stores that refuse connections.
        self.down: set[int] = set()
        #: Stores whose connection attempts hang until they time out (a lost machine).
        self.blackholed: set[int] = set()
        #: Stores that accept requests and never answer.
        self.hang: set[int] = set()
        #: Stores that apply a request and then lose the connection before answering.
        self.lose_after_apply: set[int] = set()
        self.connects: list[int] = []

    async def connect(self, address: str, cluster_id: int, timeout: float) -> FakeConnection:  # noqa: ASYNC109
        await trio.lowlevel.checkpoint()
        sid = next(s.id for s in self.cluster.stores.values() if s.address == address)
        self.connects.append(sid)
        if sid in self.down:
            raise ConnectFailed(f"cannot connect to {address}: Connection refused")
        if sid in self.blackholed:
            await trio.sleep(timeout)
            raise ConnectFailed(f"connecting to {address} took longer than {timeout}s")
        return FakeConnection(self, sid)


# -- over real sockets -----------------------------------------------------------------------


class FakeStoreHandler:
    """A store's InboundHandler that answers from the :class:`FakeCluster`."""

    def __init__(self, cluster: FakeCluster, store_id: int) -> None:
        self.cluster = cluster
        self.store_id = store_id

    def on_raft_batch(self, batch: RaftBatch) -> None:
        pass

    async def on_kv_request(self, req: KvRequest) -> KvResponse:
        await trio.lowlevel.checkpoint()
        return self.cluster.handle(self.store_id, req)

    async def on_admin_request(self, req: AdminRequest) -> AdminResponse:
        return AdminResponse(req.request_id, Internal("not supported by the fake"))

    async def on_snapshot(
        self, first: SnapshotChunk, rest: AsyncIterator[SnapshotChunk]
    ) -> SnapshotAck:
        return SnapshotAck(first.region_id, first.snapshot_id, 0, SnapshotAckStatus.Rejected)


async def serve_fake_cluster(
    cluster: FakeCluster,
    *,
    skip_stores: frozenset[int] = frozenset(),
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve placement and every store (except ``skip_stores``, whose addresses point at a
    closed port) on 127.0.0.1; ``task_status.started(placement_address)``."""
    async with trio.open_nursery() as nursery:
        for sid in sorted(cluster.stores):
            if sid in skip_stores:
                # A port that was just free: connections to it are refused.
                sock = trio.socket.socket()
                await sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
                sock.close()
            else:
                server = StoreServer(
                    FakeStoreHandler(cluster, sid), cluster_id=CLUSTER_ID, store_id=sid, port=0
                )
                port = await nursery.start(server.run)
            cluster.stores[sid] = replace(cluster.stores[sid], address=f"127.0.0.1:{port}")
        placement = PlacementServer(FakePlacement(cluster))  # type: ignore[arg-type]
        listeners = await nursery.start(placement.serve, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        task_status.started(f"127.0.0.1:{port}")


class BackgroundCluster:
    """:func:`serve_fake_cluster` in a thread with its own trio loop, for sync tests::

    with BackgroundCluster(cluster) as address:
        ...  # run the CLI or a SyncClient against `address`
    """

    def __init__(self, cluster: FakeCluster, **kwargs: Any) -> None:
        self.cluster = cluster
        self._kwargs = kwargs
        self._results: queue.Queue[str | BaseException] = queue.Queue()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self._stop = trio.Event()
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                address = await nursery.start(
                    lambda task_status: serve_fake_cluster(
                        self.cluster, task_status=task_status, **self._kwargs
                    )
                )
                self._results.put(address)
                await self._stop.wait()
                nursery.cancel_scope.cancel()

        try:
            trio.run(run)
        except BaseException as e:
            self._results.put(e)

    def __enter__(self) -> str:
        self._thread.start()
        result = self._results.get(timeout=30)
        if isinstance(result, BaseException):
            raise result
        return result

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None and self._stop is not None:
            trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(timeout=30)


def populate(cluster: FakeCluster, keys: list[bytes]) -> None:
    """Put ``key -> b"v-" + key`` for each key straight into the truth."""
    for k in keys:
        cluster.data[k] = b"v-" + k
