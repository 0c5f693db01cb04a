"""The client's cache of the routing table: which region holds a key, who leads it, and
where each store listens.

Theory of operation: the cache holds some of the cluster's regions, learnt from the
placement service (``GetRegion``/``ScanRegions``) and from stores' ``EpochNotMatch``
answers, as :class:`~multiraft.wire.placement_messages.RegionRoute` records sorted by
start key. A lookup is one bisection. A miss is the caller's cue to ask placement.

Invariants:

* Cached regions never overlap: inserting a region first evicts every cached region
  whose range overlaps it.
* A region is never replaced by an older description: an insert is ignored when a cached
  region it overlaps has a newer ``epoch.version`` (splits and merges raise it), or when
  the cached copy of the same region id has a newer epoch. Newer descriptions come from
  the stores, so a lagging placement service cannot undo them.
* A leader is always one of its region's peers. A hint naming a peer the cached region
  does not have means the cached region is stale: it is evicted.

Pure, synchronous, no I/O: the client drives it, tests drive it directly.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from multiraft.wire.placement_messages import RegionRoute, StoreInfo
from regions.region import Peer, PeerRole, Region

__all__ = ["RegionCache", "RegionCacheStatistics"]


@dataclass(frozen=True, slots=True)
class RegionCacheStatistics:
    regions: int
    stores: int
    hits: int
    misses: int


@dataclass(slots=True)
class _Entry:
    route: RegionRoute
    #: Peers (by id) that failed us since the leader was last confirmed, to try others first.
    failed_peers: set[int] = field(default_factory=set)


def _end_after(end_key: bytes, key: bytes) -> bool:
    """Whether a range ending at ``end_key`` (empty: unbounded) reaches past ``key``."""
    return not end_key or key < end_key


def _overlaps(a: Region, b: Region) -> bool:
    return _end_after(a.end_key, b.start_key) and _end_after(b.end_key, a.start_key)


class RegionCache:
    """Regions by start key, each with its believed leader, plus store addresses."""

    __slots__ = ("_entries", "_hits", "_ids", "_misses", "_starts", "_stores")

    def __init__(self) -> None:
        self._starts: list[bytes] = []
        self._entries: list[_Entry] = []
        #: region id -> start key, to find a region by id with one bisection.
        self._ids: dict[int, bytes] = {}
        self._stores: dict[int, str] = {}
        self._hits = 0
        self._misses = 0

    # -- regions ---------------------------------------------------------------------------

    def lookup(self, key: bytes) -> RegionRoute | None:
        """The cached route of the region holding ``key``, or None (ask placement)."""
        i = bisect.bisect_right(self._starts, key) - 1
        if i >= 0 and self._entries[i].route.region.contains(key):
            self._hits += 1
            return self._entries[i].route
        self._misses += 1
        return None

    def get(self, region_id: int) -> RegionRoute | None:
        """The cached route of region ``region_id``, or None."""
        i = self._index_of(region_id)
        return None if i is None else self._entries[i].route

    def routes(self) -> list[RegionRoute]:
        """Every cached route, in key order."""
        return [e.route for e in self._entries]

    def insert(self, route: RegionRoute) -> bool:
        """Cache ``route``, evicting the cached regions it overlaps.

        Returns:
            False (and changes nothing) if the cache already knows a newer description
            of that range or of that region.
        """
        region = route.region
        if route.leader is not None and region.peer_by_id(route.leader.id) is None:
            route = RegionRoute(region, None)
        lo, hi = self._overlapping(region)
        for e in self._entries[lo:hi]:
            cached = e.route.region
            if cached.id == region.id:
                if region.epoch.is_stale_against(cached.epoch):
                    return False
            elif cached.epoch.version > region.epoch.version:
                return False
        keep_leader: Peer | None = None
        for e in self._entries[lo:hi]:
            # A refresh of the same region that knows no leader keeps the one we knew.
            if e.route.region.id == region.id and route.leader is None:
                old = e.route.leader
                if old is not None and region.peer_by_id(old.id) is not None:
                    keep_leader = old
        if keep_leader is not None:
            route = RegionRoute(region, keep_leader)
        for e in self._entries[lo:hi]:
            del self._ids[e.route.region.id]
        del self._starts[lo:hi]
        del self._entries[lo:hi]
        self._starts.insert(lo, region.start_key)
        self._entries.insert(lo, _Entry(route))
        self._ids[region.id] = region.start_key
        return True

    def replace(self, regions: Iterable[Region], *, refused: Region | None = None) -> None:
        """Install the current regions a store sent with ``EpochNotMatch``.

        Args:
            regions: the store's current regions (the one asked for and its split siblings).
            refused: the region description the refused request was made for. If the
                cache still holds exactly that description afterwards, it is evicted, so
                that the next lookup asks placement, unless the store's own description
                of that region is *older* (the store lags behind; keep ours and retry).
        """
        regions = list(regions)
        for region in regions:
            self.insert(RegionRoute(region, None))
        if refused is None:
            return
        store_view = next((r for r in regions if r.id == refused.id), None)
        if store_view is not None and store_view.epoch.is_stale_against(refused.epoch):
            return
        cached = self.get(refused.id)
        if cached is not None and cached.region.epoch == refused.epoch:
            self.invalidate(refused.id)

    def invalidate(self, region_id: int) -> None:
        """Forget region ``region_id`` (its next lookup asks placement)."""
        i = self._index_of(region_id)
        if i is not None:
            del self._starts[i]
            del self._entries[i]
            del self._ids[region_id]

    def invalidate_led_by(self, store_id: int) -> int:
        """Forget every region whose believed leader is on ``store_id`` (it cannot be
        reached: stopped, drained, down); their next lookups ask placement, which knows the
        leaders that replaced it. Returns how many were forgotten.

        One unreachable store otherwise costs one failed attempt per cached region led
        there: a scan over 100 regions whose leader moved off a drained store made ~150
        attempts and missed its deadline.
        """
        gone = [e for e in self._entries
                if e.route.leader is not None and e.route.leader.store_id == store_id]  # fmt: skip
        for e in gone:
            self.invalidate(e.route.region.id)
        return len(gone)

    def clear(self) -> None:
        """Forget every region (store addresses stay)."""
        self._starts.clear()
        self._entries.clear()
        self._ids.clear()

    # -- leaders ---------------------------------------------------------------------------

    def update_leader(self, region_id: int, leader: Peer) -> bool:
        """Record a leader hint (from ``NotLeader``, or a successful reply).

        Returns:
            False if the region is not cached, or if ``leader`` is not one of its cached
            peers (then the cached region is stale and is evicted).
        """
        i = self._index_of(region_id)
        if i is None:
            return False
        e = self._entries[i]
        peer = e.route.region.peer_by_id(leader.id)
        if peer is None or peer.store_id != leader.store_id:
            self.invalidate(region_id)
            return False
        if e.route.leader != peer:
            e.route = replace(e.route, leader=peer)
        e.failed_peers.discard(peer.id)
        return True

    def confirm_leader(self, region_id: int, leader: Peer) -> None:
        """The peer answered a request as leader: forget earlier failures."""
        if self.update_leader(region_id, leader):
            i = self._index_of(region_id)
            if i is not None:
                self._entries[i].failed_peers.clear()

    def switch_peer(self, region_id: int, failed: Peer | None) -> Peer | None:
        """The current target failed (unreachable, or no leader hint): pick another.

        Marks ``failed`` as failed and moves the believed leader to the next voter, in
        peer order after ``failed``, that has not failed; when all have failed, the
        failures are forgotten and the round starts again. Returns the new target, or
        None if the region is not cached.
        """
        i = self._index_of(region_id)
        if i is None:
            return None
        e = self._entries[i]
        voters = [p for p in e.route.region.peers if p.role != PeerRole.Learner]
        if not voters:
            return None
        if failed is not None:
            e.failed_peers.add(failed.id)
        candidates = [p for p in voters if p.id not in e.failed_peers]
        if not candidates:
            e.failed_peers.clear()
            candidates = voters
        ids = [p.id for p in voters]
        start = ids.index(failed.id) + 1 if failed is not None and failed.id in ids else 0
        order = voters[start:] + voters[:start]
        nxt = next(p for p in order if p in candidates)
        e.route = replace(e.route, leader=nxt)
        return nxt

    @staticmethod
    def target(route: RegionRoute) -> Peer | None:
        """Where to send a request for ``route``: its leader, else its first voter."""
        if route.leader is not None:
            return route.leader
        for p in route.region.peers:
            if p.role != PeerRole.Learner:
                return p
        return None

    # -- stores ----------------------------------------------------------------------------

    def store_address(self, store_id: int) -> str | None:
        return self._stores.get(store_id)

    def set_store(self, store: StoreInfo) -> None:
        self._stores[store.id] = store.address

    def set_stores(self, stores: Iterable[StoreInfo]) -> None:
        for s in stores:
            self.set_store(s)

    def invalidate_store(self, store_id: int) -> None:
        """Forget a store's address (it may have moved): ask placement next time."""
        self._stores.pop(store_id, None)

    def statistics(self) -> RegionCacheStatistics:
        return RegionCacheStatistics(
            regions=len(self._entries), stores=len(self._stores), hits=self._hits,
            misses=self._misses,
        )  # fmt: skip

    # -- internals -------------------------------------------------------------------------

    def _index_of(self, region_id: int) -> int | None:
        start = self._ids.get(region_id)
        if start is None:
            return None
        i = bisect.bisect_left(self._starts, start)
        assert self._entries[i].route.region.id == region_id
        return i

    def _overlapping(self, region: Region) -> tuple[int, int]:
        """The slice ``[lo, hi)`` of cached entries overlapping ``region``."""
        lo = bisect.bisect_right(self._starts, region.start_key) - 1
        if lo < 0 or not _overlaps(self._entries[lo].route.region, region):
            lo += 1
        hi = lo
        while hi < len(self._entries) and _overlaps(self._entries[hi].route.region, region):
            hi += 1
        return lo, hi
