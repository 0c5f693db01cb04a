"""The client of the placement service, for stores, clients and the CLI (trio).

Theory of operation: one TCP connection, opened on first use and reopened after
any failure, carries one request at a time (calls from several tasks queue on a
lock; placement traffic is light). Every call runs under one deadline
(``timeout``, default 5 s) that covers waiting for the lock, connecting, the
Hello handshake, sending and the answer; within it, a failed attempt (refused,
reset, closed by the service) is retried on a new connection after a capped
exponential backoff. Every placement request is safe to resend: heartbeats and
``put_store`` are idempotent, and a resent ``alloc_ids`` only skips ids.

A call interrupted in the middle of an exchange (deadline, cancellation) closes
the connection, so a late answer can never be taken for the next call's.

Errors (:mod:`multiraft.placement.errors`): :class:`PlacementUnavailable` when the
deadline passes without an answer (the message names the address and the last
failure); :class:`WrongCluster` at once when the service belongs to another
cluster; :class:`PlacementRequestError` when the service answers with an error
(``.code``: ``NotBootstrapped``, ``StoreNotFound``, ``StaleEpoch``...).

Example::

    async with PlacementClient("127.0.0.1:2379") as pd:
        info = await pd.cluster_info()
        store_id = (await pd.alloc_ids(1)).first
        await pd.put_store(StoreInfo(store_id, "127.0.0.1:20160"))
        route = await pd.get_region(b"some key")
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from types import TracebackType
from typing import Final, TypeVar

import trio

from multiraft.placement.errors import (
    PlacementClientError,
    PlacementRequestError,
    PlacementUnavailable,
    WrongCluster,
)
from multiraft.settings import parse_address
from multiraft.transport import (
    ConnectionLost,
    FramedConnection,
    HandshakeFailed,
    ProtocolError,
    TransportError,
    connect,
)
from multiraft.wire import DEFAULT_MAX_FRAME_SIZE, ErrorCode, FrameKind, Hello, WireError
from multiraft.wire.placement_codec import decode_placement_response
from multiraft.wire.placement_messages import (
    AddOperator,
    AllocIds,
    CancelOperator,
    ClusterInfo,
    DownPeer,
    GetAllStores,
    GetClusterInfo,
    GetOperator,
    GetRegion,
    GetRegionById,
    GetRegionStatus,
    GetStore,
    GetStoreStatus,
    Ids,
    ListOperators,
    ManualOperator,
    Ok,
    OperatorInfo,
    OperatorList,
    PlacementBody,
    PlacementError,
    PlacementRequest,
    PlacementResponse,
    PlacementResult,
    PutStore,
    RegionHeartbeat,
    RegionHeartbeatReply,
    RegionRoute,
    RegionRoutes,
    RegionStatus,
    ScanRegions,
    SetStoreState,
    StoreHeartbeat,
    StoreHeartbeatReply,
    StoreInfo,
    StoreList,
    StoreState,
    StoreStats,
    StoreStatus,
    StoreStatusList,
)
from regions.region import Peer, Region

__all__ = ["PlacementClient"]

#: Default deadline of one call, and of opening a connection within it.
DEFAULT_TIMEOUT: Final = 5.0
DEFAULT_CONNECT_TIMEOUT: Final = 2.0
#: Backoff between attempts within one call.
BACKOFF_INITIAL: Final = 0.05
BACKOFF_MAX: Final = 1.0

_R = TypeVar("_R")


class PlacementClient:
    """A connection to the placement service at ``address`` (see the module docstring).

    Args:
        address: ``host:port`` of the service.
        cluster_id: the cluster the caller belongs to; 0 to learn it from the service
            (then :attr:`cluster_id` is set after the first call).
        store_id: sent in the Hello (0 for clients that are not stores).
        timeout: default deadline of each call, in seconds.
        connect_timeout: deadline of one connection attempt.
        max_frame_size: the largest answer accepted.

    Raises:
        ValueError: ``address`` is not ``host:port``.
    """

    def __init__(
        self,
        address: str,
        cluster_id: int = 0,
        *,
        store_id: int = 0,
        timeout: float = DEFAULT_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        max_frame_size: int = DEFAULT_MAX_FRAME_SIZE,
    ) -> None:
        parse_address(address, what="placement address")
        self.address = address
        self._cluster_id = cluster_id
        self._store_id = store_id
        self.timeout = timeout
        self._connect_timeout = connect_timeout
        self._max_frame_size = max_frame_size
        self._conn: FramedConnection | None = None
        self._lock = trio.Lock()
        self._next_request_id = 0
        self._closed = False
        self._rng = random.Random()

    @property
    def cluster_id(self) -> int:
        """The service's cluster id (0 until the first successful call, if not given)."""
        return self._cluster_id

    async def __aenter__(self) -> PlacementClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; later calls raise :class:`PlacementUnavailable`."""
        self._closed = True
        await self._discard()

    # -- the calls ---------------------------------------------------------------------------

    async def cluster_info(self) -> ClusterInfo:
        return self._expect(await self.call(GetClusterInfo()), ClusterInfo)

    async def alloc_ids(self, count: int = 1) -> Ids:
        """``count`` fresh ids (never handed out before, nor after)."""
        return self._expect(await self.call(AllocIds(count)), Ids)

    async def put_store(self, info: StoreInfo) -> None:
        self._expect(await self.call(PutStore(info)), Ok)

    async def get_store(self, store_id: int) -> StoreInfo:
        """Raises :class:`PlacementRequestError` (``StoreNotFound``) for an unknown store."""
        return self._expect(await self.call(GetStore(store_id)), StoreInfo)

    async def get_all_stores(self) -> list[StoreInfo]:
        return self._expect(await self.call(GetAllStores()), StoreList).stores

    async def store_heartbeat(self, stats: StoreStats) -> StoreHeartbeatReply:
        """Report the store; the reply may carry regions to bootstrap."""
        return self._expect(await self.call(StoreHeartbeat(stats)), StoreHeartbeatReply)

    async def region_heartbeat(
        self,
        region: Region,
        leader: Peer,
        term: int,
        *,
        down_peers: Sequence[DownPeer] = (),
        pending_peers: Sequence[Peer] = (),
        approximate_size: int = 0,
        approximate_keys: int = 0,
    ) -> RegionHeartbeatReply:
        """Report a region as its leader. Raises :class:`PlacementRequestError`
        (``StaleEpoch``) when the service knows a newer epoch or term."""
        hb = RegionHeartbeat(
            region, leader, term, list(down_peers), list(pending_peers), approximate_size,
            approximate_keys,
        )  # fmt: skip
        return self._expect(await self.call(hb), RegionHeartbeatReply)

    async def get_region(self, key: bytes) -> RegionRoute | None:
        """The region holding ``key`` and its last known leader; None if no region holds it
        (a range not reported since a split). Raises :class:`PlacementRequestError`
        (``NotBootstrapped``) before the cluster has a region."""
        return self._route(await self.call(GetRegion(key)))

    async def get_region_by_id(self, region_id: int) -> RegionRoute | None:
        return self._route(await self.call(GetRegionById(region_id)))

    async def scan_regions(
        self, start_key: bytes, end_key: bytes, limit: int = 0
    ) -> list[RegionRoute]:
        """Regions overlapping ``[start_key, end_key)`` (empty end: unbounded) in key order,
        at most ``limit`` (0: as many as the service sends, up to 10 000)."""
        return self._expect(await self.call(ScanRegions(start_key, end_key, limit)),
                            RegionRoutes).routes  # fmt: skip

    # -- operators ---------------------------------------------------------------------------

    async def list_operators(self) -> list[OperatorInfo]:
        """Running operators (by region), then recently finished ones (newest first)."""
        return self._expect(await self.call(ListOperators()), OperatorList).operators

    async def get_operator(self, region_id: int) -> OperatorInfo | None:
        """The region's running operator, else its latest finished one, else None."""
        result = await self.call(GetOperator(region_id))
        return None if result is None else self._expect(result, OperatorInfo)

    async def cancel_operator(self, region_id: int) -> OperatorInfo:
        """Cancel the region's running operator. Raises :class:`PlacementRequestError`
        (``RegionNotFound``) when none runs."""
        return self._expect(await self.call(CancelOperator(region_id)), OperatorInfo)

    async def add_operator(
        self,
        kind: ManualOperator,
        region_id: int,
        *,
        from_store: int = 0,
        to_store: int = 0,
        split_key: bytes = b"",
    ) -> OperatorInfo:
        """Start a manual operator. Raises :class:`PlacementRequestError`
        (``InvalidArgument``) when it cannot be built or the region is busy."""
        body = AddOperator(kind, region_id, from_store, to_store, split_key)
        return self._expect(await self.call(body), OperatorInfo)

    async def region_status(self, region_id: int) -> RegionStatus | None:
        """The region, what its last heartbeat said and its operator (None: unknown)."""
        result = await self.call(GetRegionStatus(region_id))
        return None if result is None else self._expect(result, RegionStatus)

    # -- store states --------------------------------------------------------------------------

    async def set_store_state(self, store_id: int, state: StoreState) -> StoreInfo:
        """Set a store's state; the store's record after. ``Offline`` drains it (it becomes
        ``Tombstone`` by itself once empty), ``Up`` cancels a drain. Raises
        :class:`PlacementRequestError`: ``StoreNotFound``, ``StoreTombstoned``, or
        ``InvalidArgument`` (a drain that would leave too few stores up)."""
        return self._expect(await self.call(SetStoreState(store_id, state)), StoreInfo)

    async def drain_store(self, store_id: int) -> StoreInfo:
        """Move every replica off the store, then retire it (``set_store_state(Offline)``)."""
        return await self.set_store_state(store_id, StoreState.Offline)

    async def cancel_drain(self, store_id: int) -> StoreInfo:
        """Stop draining the store (``set_store_state(Up)``)."""
        return await self.set_store_state(store_id, StoreState.Up)

    async def store_status(self, store_id: int) -> StoreStatus:
        """What the service knows of one store. Raises :class:`PlacementRequestError`
        (``StoreNotFound``) for an unknown store."""
        if store_id == 0:
            raise ValueError("store id 0 is not a store")
        result = self._expect(await self.call(GetStoreStatus(store_id)), StoreStatusList)
        if len(result.statuses) != 1:
            raise PlacementClientError(
                f"the placement service answered {len(result.statuses)} store statuses, not 1"
            )
        return result.statuses[0]

    async def store_statuses(self) -> list[StoreStatus]:
        """Every store's status, by id."""
        return self._expect(await self.call(GetStoreStatus(0)), StoreStatusList).statuses

    # -- machinery ---------------------------------------------------------------------------

    async def call(
        self,
        body: PlacementBody,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (an expiry must be PlacementUnavailable)
    ) -> PlacementResult:
        """Send one request and return its result (retrying within the deadline).

        Raises:
            PlacementUnavailable: no answer within ``timeout`` (default :attr:`timeout`).
            WrongCluster: the service is in another cluster.
            PlacementRequestError: the service answered with an error.
        """
        t = self.timeout if timeout is None else timeout
        last: Exception | None = None
        response: PlacementResponse | None = None
        with trio.move_on_after(t):
            async with self._lock:
                delay = 0.0
                while True:
                    if self._closed:
                        raise PlacementUnavailable("the placement client is closed")
                    try:
                        response = await self._attempt(body)
                        break
                    except TransportError as e:
                        await self._discard()
                        last = e
                    delay = BACKOFF_INITIAL if delay == 0 else min(delay * 2, BACKOFF_MAX)
                    await trio.sleep(delay * self._rng.uniform(0.8, 1.0))
        if response is None:
            why = f": {last}" if last is not None else ""
            raise PlacementUnavailable(
                f"the placement service at {self.address} did not answer within {t:g}s{why}"
            )
        result = response.result
        if isinstance(result, PlacementError):
            raise PlacementRequestError(result.code, result.message)
        return result

    async def _attempt(self, body: PlacementBody) -> PlacementResponse:
        conn = await self._connection()
        self._next_request_id += 1
        rid = self._next_request_id
        try:
            await conn.send(PlacementRequest(rid, body), timeout=math.inf)
            while True:
                frame = await conn.receive_frame(timeout=math.inf)
                if frame is None:
                    raise ConnectionLost("the placement service closed the connection")
                if frame.kind == FrameKind.ERROR:
                    raise ConnectionLost(
                        "the placement service closed the connection",
                        notice=conn.decode_notice(frame),
                    )
                if frame.kind != FrameKind.PLACEMENT_RESPONSE:
                    raise ProtocolError(f"the placement service sent a {frame.kind.name} frame")
                try:
                    response = decode_placement_response(frame.payload)
                except WireError as e:
                    raise ProtocolError(f"bad answer from the placement service: {e}") from e
                if response.request_id == rid:
                    return response
                # Not ours (cannot happen on a connection used by one call at a time): skip.
        except BaseException:
            # Interrupted mid-exchange (error, deadline, cancellation): the stream may hold
            # half a frame or a late answer; never reuse it.
            await self._discard()
            raise

    async def _connection(self) -> FramedConnection:
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn
        hello = Hello(self._store_id, self._cluster_id, "")
        try:
            conn = await connect(
                self.address,
                hello,
                timeout=self._connect_timeout,
                max_frame_size=self._max_frame_size,
                name=f"placement service {self.address}",
            )
        except HandshakeFailed as e:
            if e.notice is not None and e.notice.code == ErrorCode.WrongCluster:
                raise WrongCluster(self.address, self._cluster_id, e.notice.message) from None
            raise
        peer = conn.peer
        if peer is not None and self._cluster_id == 0:
            self._cluster_id = peer.cluster_id
        self._conn = conn
        return conn

    async def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with trio.CancelScope(shield=True):
                await conn.aclose()

    @staticmethod
    def _expect(result: PlacementResult, cls: type[_R]) -> _R:
        if not isinstance(result, cls):
            raise PlacementClientError(
                f"the placement service answered {type(result).__name__}, expected {cls.__name__}"
            )
        return result

    def _route(self, result: PlacementResult) -> RegionRoute | None:
        if result is None:
            return None
        return self._expect(result, RegionRoute)
