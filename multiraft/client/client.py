"""The trio client: key-value operations on a multiraft cluster.

Theory of operation: a :class:`Client` knows only the placement service's address. On
entry it asks placement for the cluster id; then every call finds the region holding its
key in a :class:`~multiraft.client.region_cache.RegionCache` (asking placement on a miss),
sends a :class:`~multiraft.wire.KvRequest` made for the region epoch it believes in to the
peer it believes leads the region, over one
:class:`~multiraft.transport.RpcConnection` per store (shared by all calls, multiplexed),
and reacts to the answer as :mod:`multiraft.client.policy` says: update the cache from
``NotLeader`` hints and ``EpochNotMatch`` regions and retry, or stop.

Rules:

* **A deadline on every call.** Each call has ``timeout`` seconds (the client's default,
  or the call's own) for everything: placement lookups, connecting, attempts and
  backoffs. When it passes, the call raises
  :class:`~multiraft.client.errors.RequestTimeout`.
* **Writes are never retried in doubt.** A write is retried only after an answer that
  proves it was not applied (``NotLeader``, ``EpochNotMatch``, ``RegionNotFound``,
  ``KeyNotInRegion``, ``ServerIsBusy``, or a connection that never opened). After
  ``StaleCommand``, a store ``Timeout``, or a connection lost once the request was sent,
  the call raises :class:`~multiraft.client.errors.IndeterminateWrite` at once, and a
  deadline that passes while a write is in flight raises ``RequestTimeout`` with
  ``definite=False``. See :mod:`multiraft.client.errors` for recording histories.
  (Hence the ``timeout=`` argument of each method, ``noqa: ASYNC109``: the client must see
  its own deadline pass to say whether a write is in doubt; a caller's cancel scope
  cannot. Cancelling a call from outside leaves a write's outcome unknown.)
* **Reads retry anything transient** until the deadline, each attempt bounded by
  ``attempt_timeout`` so that a partitioned leader cannot hold a read for the whole call.
* **Scans and batches are per region.** ``scan`` reads region after region in key order
  (each region's part is linearizable; the scan as a whole is not a snapshot).
  ``batch_put`` writes each region's share atomically, concurrently; it is not atomic
  across regions.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Final, NoReturn, Protocol, TypeVar

import trio

from multiraft.client.errors import (
    ClientError,
    ClusterUnavailable,
    IndeterminateWrite,
    RequestFailed,
    RequestTimeout,
)
from multiraft.client.policy import Action, Backoff, decide, describe_failure
from multiraft.client.region_cache import RegionCache, RegionCacheStatistics
from multiraft.placement.errors import (
    PlacementClientError,
    PlacementRequestError,
    PlacementUnavailable,
    WrongCluster,
)
from multiraft.transport.connection import parse_address
from multiraft.transport.errors import (
    ConnectFailed,
    ConnectionLost,
    HandshakeFailed,
    RpcTimeout,
    TransportError,
)
from multiraft.wire import (
    BatchPut,
    Cas,
    CasResult,
    Delete,
    EpochNotMatch,
    GetResult,
    Hello,
    KeyNotInRegion,
    KvOp,
    KvRequest,
    KvResponse,
    KvResult,
    NotLeader,
    Put,
    ReadMode,
    RegionNotFound,
    RequestError,
    Scan,
    ScanResult,
    ServerIsBusy,
    WriteOk,
)
from multiraft.wire import Get as GetOp
from multiraft.wire.placement_messages import (
    ClusterInfo,
    PlacementErrorCode,
    RegionRoute,
    StoreInfo,
)
from regions.region import Peer

__all__ = [
    "DEFAULT_ATTEMPT_TIMEOUT",
    "DEFAULT_PLACEMENT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "Client",
    "ClientStatistics",
    "PlacementApi",
    "StoreConnection",
    "StoreConnector",
]

#: Seconds a call may take, in all.
DEFAULT_TIMEOUT: Final = 5.0
#: Seconds one read attempt may wait for its answer before another peer is tried.
DEFAULT_ATTEMPT_TIMEOUT: Final = 2.0
#: Seconds one placement request may take (it is retried within the call's deadline).
DEFAULT_PLACEMENT_TIMEOUT: Final = 2.0
#: Pairs asked of a store per Scan request (stores cap a Scan at 10 000 pairs).
DEFAULT_SCAN_PAGE_SIZE: Final = 512
#: Regions of one batch_put written at once.
BATCH_CONCURRENCY: Final = 16
#: Immediate retries (no backoff) per call: at a new leader hint, or after fresh regions.
MAX_FAST_RETRIES: Final = 3

_R = TypeVar("_R")


class PlacementApi(Protocol):
    """What the client asks the placement service; implemented by
    :class:`~multiraft.placement.client.PlacementClient` (fakes in tests)."""

    async def cluster_info(self) -> ClusterInfo: ...
    async def get_region(self, key: bytes) -> RegionRoute | None: ...
    async def get_store(self, store_id: int) -> StoreInfo: ...
    async def get_all_stores(self) -> list[StoreInfo]: ...
    async def scan_regions(
        self, start_key: bytes, end_key: bytes, limit: int
    ) -> list[RegionRoute]: ...
    async def aclose(self) -> None: ...


class StoreConnection(Protocol):
    """One connection to a store; implemented by :class:`~multiraft.transport.RpcConnection`."""

    @property
    def peer(self) -> Hello: ...
    @property
    def closed(self) -> bool: ...
    async def kv(self, req: KvRequest, *, timeout: float) -> KvResponse: ...  # noqa: ASYNC109
    async def aclose(self) -> None: ...


#: ``connect(address, cluster_id, timeout)``: open a store connection (raises
#: ``ConnectFailed``/``HandshakeFailed``).
StoreConnector = Callable[[str, int, float], Awaitable[StoreConnection]]


async def _rpc_connect(address: str, cluster_id: int, timeout: float) -> StoreConnection:  # noqa: ASYNC109
    from multiraft.transport.rpc import RpcConnection

    return await RpcConnection.connect(address, cluster_id=cluster_id, timeout=timeout)


def _default_placement(address: str, timeout: float) -> PlacementApi:
    from multiraft.placement.client import PlacementClient

    client: PlacementApi = PlacementClient(address, timeout=timeout)
    return client


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    calls: int
    attempts: int
    retries: int
    #: Store connections open now.
    connections: int
    cache: RegionCacheStatistics


class _Retry(Exception):
    """One attempt failed in a way that allows another (internal control flow)."""

    def __init__(self, reason: str, *, unavailable: bool = False, floor: float = 0.0,
                 fast: bool = False) -> None:  # fmt: skip
        super().__init__(reason)
        self.reason = reason
        #: The failure was "cannot reach" (placement, a store) rather than a refusal.
        self.unavailable = unavailable
        #: The least backoff, seconds (a store's ServerIsBusy.backoff_ms).
        self.floor = floor
        #: Retry at once if the call still has fast retries left.
        self.fast = fast


class _Call:
    """The state of one client call across its attempts."""

    __slots__ = (
        "backoff",
        "deadline",
        "fast_left",
        "in_doubt",
        "last",
        "unavailable",
        "what",
        "write",
    )

    def __init__(self, what: str, *, write: bool, deadline: float, backoff: Backoff) -> None:
        self.what = what
        self.write = write
        self.deadline = deadline
        self.backoff = backoff
        self.fast_left = MAX_FAST_RETRIES
        #: A write attempt was sent and has not been answered: its outcome is unknown.
        self.in_doubt = False
        self.last = ""
        self.unavailable = False

    def progressed(self) -> None:
        """One step of a multi-region call succeeded: the next region starts its retries
        afresh (its own fast retries and backoff); the call's deadline still bounds all."""
        self.backoff.reset()
        self.fast_left = MAX_FAST_RETRIES
        self.unavailable = False


def _end_min(a: bytes, b: bytes) -> bytes:
    """The smaller of two range ends, where an empty end means unbounded."""
    if not a:
        return b
    if not b:
        return a
    return min(a, b)


class Client:
    """A trio client of one multiraft cluster. Use it as an async context manager::

        async with Client("127.0.0.1:2379") as client:
            await client.put(b"k", b"v")
            assert await client.get(b"k") == b"v"

    Args:
        placement_address: ``host:port`` of the placement service.
        timeout: the default deadline of each call, seconds.
        read_mode: how reads are served by default (``ReadMode.Linearizable``: through
            ReadIndex; ``Lease``: leader lease, else ReadIndex; ``Stale``: any replica).
        attempt_timeout: the longest one read attempt waits before trying another peer.
        placement_timeout: the longest one placement request may take (connecting
            included); also the longest ``connect`` waits for an unreachable service.
        scan_page_size: the most pairs one Scan request asks a store for.
        rng: the backoff jitter's source; leave None (OS entropy) except in tests.
        placement: a placement API object to use instead of connecting to
            ``placement_address`` (tests, embedding); closed with the client.
        connect_store: how to open store connections (default: ``RpcConnection.connect``).

    Raises:
        ValueError: ``placement_address`` is not ``host:port`` (at construction).
    """

    def __init__(
        self,
        placement_address: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        read_mode: ReadMode = ReadMode.Linearizable,
        attempt_timeout: float = DEFAULT_ATTEMPT_TIMEOUT,
        placement_timeout: float = DEFAULT_PLACEMENT_TIMEOUT,
        scan_page_size: int = DEFAULT_SCAN_PAGE_SIZE,
        rng: random.Random | None = None,
        placement: PlacementApi | None = None,
        connect_store: StoreConnector | None = None,
    ) -> None:
        parse_address(placement_address)  # ValueError for the caller
        if min(timeout, attempt_timeout, placement_timeout) <= 0:
            raise ValueError("timeouts must be positive")
        self.placement_address = placement_address
        self.timeout = timeout
        self.read_mode = read_mode
        self.attempt_timeout = attempt_timeout
        self.placement_timeout = placement_timeout
        if scan_page_size < 1:
            raise ValueError("scan_page_size must be >= 1")
        self.scan_page_size = scan_page_size
        self._rng = rng if rng is not None else random.Random()
        self._placement_given = placement
        self._placement: PlacementApi | None = None
        self._connect_store: StoreConnector = connect_store or _rpc_connect
        self._cache = RegionCache()
        self._conns: dict[int, StoreConnection] = {}
        self._conn_locks: dict[int, trio.Lock] = {}
        #: Per store: when the last connection attempt failed, and why.
        self._connect_failures: dict[int, tuple[float, str]] = {}
        self.cluster_id = 0
        self._closed = False
        self._calls = 0
        self._attempts = 0
        self._retries = 0

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Client:
        try:
            await self.connect()
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def connect(self) -> None:
        """Reach the placement service and learn the cluster id (``async with`` does this).

        Raises:
            ClusterUnavailable: placement did not answer within ``timeout``, or belongs
                to another cluster.
        """
        if self._placement is None:
            # A little under the call's deadline, so that the placement client's own
            # error (which says why: refused, timed out...) comes first.
            self._placement = self._placement_given or _default_placement(
                self.placement_address, min(self.placement_timeout, 0.9 * self.timeout)
            )
        deadline = trio.current_time() + self.timeout
        info = await self._placement_call(deadline, self._placement.cluster_info)
        self.cluster_id = info.cluster_id

    async def aclose(self) -> None:
        """Close every store connection and the placement client. Idempotent."""
        if self._closed:
            return
        self._closed = True
        conns, self._conns = list(self._conns.values()), {}
        with trio.CancelScope(shield=True):
            for conn in conns:
                await conn.aclose()
            if self._placement is not None:
                await self._placement.aclose()

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(
            calls=self._calls, attempts=self._attempts, retries=self._retries,
            connections=sum(1 for c in self._conns.values() if not c.closed),
            cache=self._cache.statistics(),
        )  # fmt: skip

    @property
    def region_cache(self) -> RegionCache:
        """The routing cache (read it; the client keeps it up to date)."""
        return self._cache

    # -- the API ---------------------------------------------------------------------------

    async def get(
        self,
        key: bytes,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        read_mode: ReadMode | None = None,
    ) -> bytes | None:
        """The value of ``key``, or None if it has none.

        Raises:
            RequestTimeout, ClusterUnavailable, RequestFailed (all definite).
        """
        _check_key(key)
        call = self._new_call(f"get {key!r}", write=False, timeout=timeout)
        _, result = await self._run(call, key, lambda _r: GetOp(key), read_mode)
        return _expect(call, result, GetResult).value

    async def put(self, key: bytes, value: bytes, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Set ``key`` to ``value``.

        Raises:
            IndeterminateWrite: the outcome is unknown (see the module docstring).
            RequestTimeout: the deadline passed (outcome unknown unless ``definite``).
            ClusterUnavailable: nothing could be reached (definite).
        """
        _check_key(key)
        _check_value(value)
        call = self._new_call(f"put {key!r}", write=True, timeout=timeout)
        _, result = await self._run(call, key, lambda _r: Put(key, value), None)
        _expect(call, result, WriteOk)

    async def delete(self, key: bytes, *, timeout: float | None = None) -> None:  # noqa: ASYNC109
        """Remove ``key`` (no error if it is absent). Errors as for :meth:`put`."""
        _check_key(key)
        call = self._new_call(f"delete {key!r}", write=True, timeout=timeout)
        _, result = await self._run(call, key, lambda _r: Delete(key), None)
        _expect(call, result, WriteOk)

    async def cas(
        self,
        key: bytes,
        expected: bytes | None,
        new: bytes | None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> tuple[bool, bytes | None]:
        """Compare-and-swap: set ``key`` to ``new`` iff its value is ``expected``.

        ``expected=None`` means "the key is absent"; ``new=None`` deletes the key.

        Returns:
            ``(succeeded, previous)``: whether the swap happened, and the value before
            the operation (None if the key was absent).

        Errors as for :meth:`put`.
        """
        _check_key(key)
        if new is not None:
            _check_value(new)
        call = self._new_call(f"cas {key!r}", write=True, timeout=timeout)
        _, result = await self._run(call, key, lambda _r: Cas(key, expected, new), None)
        res = _expect(call, result, CasResult)
        return res.succeeded, res.previous

    async def scan(
        self,
        start: bytes = b"",
        end: bytes = b"",
        limit: int = 1000,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
        read_mode: ReadMode | None = None,
    ) -> list[tuple[bytes, bytes]]:
        """Up to ``limit`` pairs with ``start <= key < end`` (empty ``end``: no upper
        bound), in key order, across region boundaries.

        Each region is read in pages of at most ``scan_page_size`` pairs, each page one
        (linearizable by default) read; the whole scan is not a snapshot of the cluster at
        one instant. One deadline covers all pages.

        Raises:
            ValueError: ``limit`` is negative.
            RequestTimeout, ClusterUnavailable, RequestFailed (all definite).
        """
        if limit < 0:
            raise ValueError(f"scan limit must be >= 0, got {limit}")
        out: list[tuple[bytes, bytes]] = []
        if limit == 0 or (end and end <= start):
            return out
        call = self._new_call(f"scan [{start!r}, {end!r})", write=False, timeout=timeout)
        lo = start
        while len(out) < limit:
            want = min(limit - len(out), self.scan_page_size)

            def build(route: RegionRoute, lo: bytes = lo, want: int = want) -> KvOp:
                return Scan(lo, _end_min(end, route.region.end_key), want)

            route, result = await self._run(call, lo, build, read_mode)
            pairs = _expect(call, result, ScanResult).pairs[:want]
            sub_end = _end_min(end, route.region.end_key)
            prev = out[-1][0] if out else None
            for k, _v in pairs:
                if k < lo or (sub_end and k >= sub_end) or (prev is not None and k <= prev):
                    raise RequestFailed(f"{call.what}: store returned key {k!r} out of order "
                                        f"or outside [{lo!r}, {sub_end!r})")  # fmt: skip
                prev = k
            out.extend(pairs)
            call.progressed()
            if len(pairs) == want:
                # A full page: the region may hold more; go on just after the last key.
                lo = pairs[-1][0] + b"\x00"
            else:
                region_end = route.region.end_key
                if not region_end:
                    break
                lo = region_end
            if end and lo >= end:
                break
        return out

    async def batch_put(
        self,
        pairs: Iterable[tuple[bytes, bytes]],
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> None:
        """Write many pairs: each region's share atomically, the regions concurrently.

        A key given twice takes its last value. Not atomic across regions: on error some
        regions may have been written; the error is then indeterminate (``definite`` is
        False) even if each failed region's error was definite.

        Errors as for :meth:`put`.
        """
        latest: dict[bytes, bytes] = {}
        for k, v in pairs:
            _check_key(k)
            _check_value(v)
            latest[k] = v
        if not latest:
            return
        todo = sorted(latest.items())
        call_timeout = self.timeout if timeout is None else timeout
        deadline = trio.current_time() + call_timeout
        groups = await self._group_by_region(todo, deadline)
        errors: list[ClientError] = []
        written = 0
        limiter = trio.CapacityLimiter(BATCH_CONCURRENCY)

        async def write_group(group: list[tuple[bytes, bytes]]) -> None:
            nonlocal written
            async with limiter:
                try:
                    await self._put_group(group, deadline)
                    written += 1
                except ClientError as e:
                    errors.append(e)

        async with trio.open_nursery() as nursery:
            for group in groups:
                nursery.start_soon(write_group, group)
        if not errors:
            return
        if written:
            raise IndeterminateWrite(
                f"batch_put of {len(todo)} keys: {written} of {len(groups)} region groups "
                f"written, then: {errors[0]}"
            )
        raise next((e for e in errors if not e.definite), errors[0])

    async def locate(self, key: bytes, *, timeout: float | None = None) -> RegionRoute:  # noqa: ASYNC109
        """The region holding ``key`` and its believed leader (from the cache or placement).

        Raises:
            RequestTimeout, ClusterUnavailable.
        """
        call = self._new_call(f"locate {key!r}", write=False, timeout=timeout)
        with trio.move_on_at(call.deadline):
            while True:
                try:
                    return await self._locate(call, key)
                except _Retry as r:
                    await self._back_off(call, r)
        self._timed_out(call)

    async def list_stores(self, *, timeout: float | None = None) -> list[StoreInfo]:  # noqa: ASYNC109
        """Every store the placement service knows, by id (tombstones included).

        Raises:
            ClusterUnavailable: placement cannot be reached in time.
        """
        deadline = self._deadline(timeout)
        placement = self._need_placement()
        stores = await self._placement_call(deadline, placement.get_all_stores)
        self._cache.set_stores(stores)
        return sorted(stores, key=lambda s: s.id)

    async def list_regions(
        self, start: bytes = b"", end: bytes = b"", limit: int = 0, *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> list[RegionRoute]:  # fmt: skip
        """Regions overlapping ``[start, end)`` in key order with their leaders, as the
        placement service knows them (``limit`` 0: all).

        Raises:
            ClusterUnavailable: placement cannot be reached in time.
        """
        deadline = self._deadline(timeout)
        placement = self._need_placement()
        routes = await self._placement_call(
            deadline, lambda: placement.scan_regions(start, end, limit)
        )
        return routes

    # -- one call: attempts until success, a final error, or the deadline -------------------

    def _deadline(self, timeout: float | None) -> float:
        t = self.timeout if timeout is None else timeout
        if t <= 0:
            raise ValueError(f"timeout must be positive, got {t}")
        return trio.current_time() + t

    def _new_call(self, what: str, *, write: bool, timeout: float | None) -> _Call:
        if self._closed:
            raise RuntimeError("the client is closed")
        self._calls += 1
        backoff = Backoff(rng=self._rng)
        return _Call(what, write=write, deadline=self._deadline(timeout), backoff=backoff)

    def _need_placement(self) -> PlacementApi:
        if self._placement is None:
            raise RuntimeError("use `async with Client(...)` (or await connect()) first")
        return self._placement

    async def _run(
        self,
        call: _Call,
        key: bytes,
        build: Callable[[RegionRoute], KvOp],
        read_mode: ReadMode | None,
    ) -> tuple[RegionRoute, KvResult]:
        """Attempt until success: the route that answered and its result."""
        mode = self.read_mode if read_mode is None else read_mode
        with trio.move_on_at(call.deadline):
            while True:
                try:
                    return await self._attempt(call, key, build, mode)
                except _Retry as r:
                    await self._back_off(call, r)
        self._timed_out(call)

    async def _back_off(self, call: _Call, r: _Retry) -> None:
        self._retries += 1
        call.last = r.reason
        call.unavailable = r.unavailable
        if r.fast and call.fast_left > 0:
            call.fast_left -= 1
            await trio.lowlevel.checkpoint()
            return
        await trio.sleep(call.backoff.next_delay(floor=r.floor))

    def _timed_out(self, call: _Call) -> NoReturn:
        """Raise the error for a call whose deadline passed."""
        last = f" (last error: {call.last})" if call.last else ""
        if call.unavailable and not call.in_doubt:
            raise ClusterUnavailable(f"{call.what}: cluster unavailable{last}")
        definite = not (call.write and call.in_doubt)
        outcome = "" if definite else "; the write may or may not have been applied"
        raise RequestTimeout(
            f"{call.what}: no answer within the deadline{outcome}{last}",
            definite=definite, last_error=call.last,
        )  # fmt: skip

    async def _attempt(
        self, call: _Call, key: bytes, build: Callable[[RegionRoute], KvOp], mode: ReadMode
    ) -> tuple[RegionRoute, KvResult]:
        route = await self._locate(call, key)
        region = route.region
        peer = RegionCache.target(route)
        if peer is None:
            self._cache.invalidate(region.id)
            raise _Retry(f"region {region.id} has no voter in its description")
        conn = await self._connection(call, region.id, peer)
        req = KvRequest(0, region.id, region.epoch, build(route), mode)
        timeout = call.deadline - trio.current_time()
        if not call.write:
            timeout = min(timeout, self.attempt_timeout)
        self._attempts += 1
        call.in_doubt = call.write
        try:
            resp = await conn.kv(req, timeout=max(timeout, 0.0))
        except TransportError as e:
            return self._transport_failure(call, region.id, peer, e)
        call.in_doubt = False
        err = resp.result
        if not isinstance(err, RequestError):
            self._cache.confirm_leader(region.id, peer)
            return route, err
        action = decide(err, write=call.write)
        if action is Action.INDETERMINATE:
            call.in_doubt = True
            raise IndeterminateWrite(f"{call.what}: outcome unknown: {describe_failure(err)}")
        if action is Action.FAIL:
            raise RequestFailed(f"{call.what}: {describe_failure(err)}")
        raise self._refused(route, peer, err)

    def _transport_failure(
        self, call: _Call, region_id: int, peer: Peer, e: TransportError
    ) -> NoReturn:
        if isinstance(e, ConnectionLost):
            self._conns.pop(peer.store_id, None)
        if call.write and isinstance(e, RpcTimeout):
            # The call's own deadline passed while the write was in flight.
            call.last = str(e)
            self._timed_out(call)
        action = decide(e, write=call.write)
        if action is Action.INDETERMINATE:
            raise IndeterminateWrite(f"{call.what}: outcome unknown: {e}")
        self._cache.switch_peer(region_id, peer)
        if not isinstance(e, RpcTimeout):
            # The store is unreachable, not slow: no region it led is worth trying there.
            self._cache.invalidate_led_by(peer.store_id)
        raise _Retry(f"store {peer.store_id}: {e}", unavailable=not isinstance(e, RpcTimeout),
                     fast=True)  # fmt: skip

    def _refused(self, route: RegionRoute, peer: Peer, err: RequestError) -> _Retry:
        """Update the cache after a definite refusal; the retry to raise."""
        region = route.region
        reason = f"store {peer.store_id}: {describe_failure(err)}"
        cache = self._cache
        if isinstance(err, NotLeader):
            hint = err.leader
            if hint is not None and hint.id != peer.id and cache.update_leader(region.id, hint):
                return _Retry(reason, fast=True)
            if hint is None or hint.id == peer.id:
                cache.switch_peer(region.id, peer)
            return _Retry(reason)
        if isinstance(err, EpochNotMatch):
            cache.replace(err.current_regions, refused=region)
            return _Retry(reason, fast=True)
        if isinstance(err, RegionNotFound | KeyNotInRegion):
            cache.invalidate(region.id)
            return _Retry(reason)
        if isinstance(err, ServerIsBusy):
            return _Retry(reason, floor=err.backoff_ms / 1000)
        return _Retry(reason)  # StaleCommand / Timeout on a read

    # -- routing and connections -----------------------------------------------------------

    async def _locate(self, call: _Call, key: bytes) -> RegionRoute:
        route = self._cache.lookup(key)
        if route is not None:
            return route
        placement = self._need_placement()
        try:
            route = await placement.get_region(key)
        except PlacementRequestError as e:
            if e.code == PlacementErrorCode.NotBootstrapped:
                raise _Retry("the cluster is not bootstrapped yet", unavailable=True) from e
            raise _Retry(f"placement: {e}") from e
        except PlacementUnavailable as e:
            raise _Retry(str(e), unavailable=True) from e
        except WrongCluster as e:
            raise ClusterUnavailable(str(e), address=self.placement_address) from e
        except PlacementClientError as e:
            raise _Retry(f"placement: {e}") from e
        if route is None:
            raise _Retry(f"no region holds {key!r} (cluster not bootstrapped?)",
                         unavailable=True)  # fmt: skip
        self._cache.insert(route)
        return self._cache.lookup(key) or route

    async def _store_address(self, store_id: int) -> str:
        address = self._cache.store_address(store_id)
        if address is not None:
            return address
        placement = self._need_placement()
        try:
            store = await placement.get_store(store_id)
        except PlacementRequestError as e:
            raise ConnectFailed(f"store {store_id} is unknown to placement: {e}") from e
        except PlacementUnavailable as e:
            raise _Retry(str(e), unavailable=True) from e
        except WrongCluster as e:
            raise ClusterUnavailable(str(e), address=self.placement_address) from e
        except PlacementClientError as e:
            raise _Retry(f"placement: {e}") from e
        self._cache.set_store(store)
        return store.address

    async def _connection(self, call: _Call, region_id: int, peer: Peer) -> StoreConnection:
        """The open connection to ``peer``'s store (opened if needed, one per store).

        One task connects at a time per store; when it fails, the tasks that waited behind
        it fail at once with the same reason instead of each trying again.
        """
        sid = peer.store_id
        conn = self._conns.get(sid)
        if conn is not None and not conn.closed:
            return conn
        lock = self._conn_locks.setdefault(sid, trio.Lock())
        queued_at = trio.current_time()
        async with lock:
            conn = self._conns.get(sid)
            if conn is not None and not conn.closed:
                return conn
            failed = self._connect_failures.get(sid)
            if failed is not None and failed[0] >= queued_at:
                self._cache.switch_peer(region_id, peer)
                raise _Retry(failed[1], unavailable=True, fast=True)
            try:
                address = await self._store_address(sid)
                timeout = min(call.deadline - trio.current_time(), self.attempt_timeout)
                conn = await self._connect_store(address, self.cluster_id, max(timeout, 0.0))
                if conn.peer.store_id not in (0, sid):
                    other = conn.peer.store_id
                    await conn.aclose()
                    raise ConnectFailed(f"{address} is store {other}, not store {sid}")
            except (ConnectFailed, HandshakeFailed) as e:
                reason = f"store {sid}: {e}"
                self._connect_failures[sid] = (trio.current_time(), reason)
                self._cache.invalidate_store(sid)
                self._cache.switch_peer(region_id, peer)
                raise _Retry(reason, unavailable=True, fast=True) from e
            self._connect_failures.pop(sid, None)
            self._conns[sid] = conn
            return conn

    async def _group_by_region(
        self, todo: list[tuple[bytes, bytes]], deadline: float
    ) -> list[list[tuple[bytes, bytes]]]:
        """``todo`` (sorted) cut into runs that the cache says share a region."""
        call = _Call("batch_put", write=True, deadline=deadline, backoff=Backoff(rng=self._rng))
        groups: list[list[tuple[bytes, bytes]]] = []
        with trio.move_on_at(deadline):
            i = 0
            while i < len(todo):
                try:
                    route = await self._locate(call, todo[i][0])
                except _Retry as r:
                    await self._back_off(call, r)
                    continue
                j = i + 1
                while j < len(todo) and route.region.contains(todo[j][0]):
                    j += 1
                groups.append(todo[i:j])
                i = j
            return groups
        self._timed_out(call)

    async def _put_group(self, group: list[tuple[bytes, bytes]], deadline: float) -> None:
        """Write one group; if its region has shrunk meanwhile, the rest goes on after."""
        while group:
            call = _Call(f"batch_put from {group[0][0]!r}", write=True, deadline=deadline,
                         backoff=Backoff(rng=self._rng))  # fmt: skip

            def build(route: RegionRoute, group: list[tuple[bytes, bytes]] = group) -> KvOp:
                return BatchPut([p for p in group if route.region.contains(p[0])])

            route, result = await self._run(call, group[0][0], build, None)
            _expect(call, result, WriteOk)
            group = [p for p in group if not route.region.contains(p[0])]

    async def _placement_call(self, deadline: float, fn: Callable[[], Awaitable[_R]]) -> _R:
        """One placement request under ``deadline``; every failure is ClusterUnavailable."""
        address = self.placement_address
        try:
            with trio.fail_at(deadline):
                return await fn()
        except trio.TooSlowError:
            raise ClusterUnavailable(
                f"the placement service at {address} did not answer in time", address=address
            ) from None
        except (PlacementUnavailable, WrongCluster) as e:
            raise ClusterUnavailable(str(e), address=address) from e
        except (PlacementClientError, TransportError) as e:
            raise ClusterUnavailable(
                f"the placement service at {address} failed: {e}", address=address
            ) from e


_T = TypeVar("_T", GetResult, ScanResult, CasResult, WriteOk)


def _expect(call: _Call, result: KvResult, kind: type[_T]) -> _T:
    if not isinstance(result, kind):
        msg = f"{call.what}: the store answered with {type(result).__name__}"
        if call.write:
            raise IndeterminateWrite(msg)
        raise RequestFailed(msg)
    return result


def _check_key(key: bytes) -> None:
    if not isinstance(key, bytes):
        raise TypeError(f"keys are bytes, not {type(key).__name__}")


def _check_value(value: bytes) -> None:
    if not isinstance(value, bytes):
        raise TypeError(f"values are bytes, not {type(value).__name__}")
