"""Router: region id -> replica, the key ranges of initialized regions, and tombstones.

Theory of operation
-------------------
The ready loop routes every raft envelope by ``region_id`` (a dict lookup) and
every client request the same way. What the router also knows, so that peer
creation (``peer_create.py``) can decide without touching disk:

* ``tombstones``: the final ``RegionLocalState`` of every region this store
  once hosted and removed, loaded at startup and added to on destroy. They are
  kept forever: a message for a tombstoned peer is refused.
* ``dormant``: uninitialized replicas found on disk at startup. They are not
  started (they hold no data and know neither their range nor their peers),
  but their raft state (a vote!) must survive: a message that may create the
  region's peer re-creates it from these records instead of from zero.
* the key ranges of initialized replicas, as two parallel sorted lists, so an
  overlap query is two bisections: the ranges of initialized regions never
  overlap (that is what the overlap check at creation and snapshot time keeps).

Only the ready loop mutates the router.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator

from multiraft.storage.recovery import RecoveredRegion
from multiraft.store.replica import Replica
from regions.local_state import RegionLocalState

__all__ = ["Router"]


class Router:
    """The store's replicas by region id, plus the range index and tombstones."""

    def __init__(self) -> None:
        self.replicas: dict[int, Replica] = {}
        self.tombstones: dict[int, RegionLocalState] = {}
        self.dormant: dict[int, RecoveredRegion] = {}
        # Initialized regions sorted by start key: _starts[i] is the start of _ids[i].
        self._starts: list[bytes] = []
        self._ids: list[int] = []

    def __len__(self) -> int:
        return len(self.replicas)

    def __iter__(self) -> Iterator[Replica]:
        return iter(self.replicas.values())

    def get(self, region_id: int) -> Replica | None:
        return self.replicas.get(region_id)

    # -- membership -------------------------------------------------------------------

    def add(self, r: Replica) -> None:
        """Register ``r`` (and its range, if initialized).

        Raises:
            ValueError: the region is already routed, or its range overlaps another.
        """
        if r.region_id in self.replicas:
            raise ValueError(f"region {r.region_id} already has a replica here")
        self.dormant.pop(r.region_id, None)
        self.replicas[r.region_id] = r
        if r.initialized:
            self._index(r)

    def remove(self, region_id: int, tombstone: RegionLocalState | None = None) -> Replica | None:
        """Forget the replica of ``region_id``; remember its tombstone if given."""
        r = self.replicas.pop(region_id, None)
        self._unindex(region_id)
        if tombstone is not None:
            self.tombstones[region_id] = tombstone
        return r

    def update_range(self, r: Replica) -> None:
        """Re-index ``r`` after its range changed or it became initialized.

        Raises:
            ValueError: the new range overlaps another initialized region.
        """
        self._unindex(r.region_id)
        if r.initialized:
            self._index(r)

    # -- ranges -----------------------------------------------------------------------

    def overlapping(self, start: bytes, end: bytes, *, exclude: int = 0) -> list[int]:
        """Ids of initialized regions (other than ``exclude``) overlapping ``[start, end)``.

        An empty ``end`` is unbounded.
        """
        out: list[int] = []
        starts, ids = self._starts, self._ids
        j = bisect.bisect_left(starts, start)
        # The region starting before ``start`` may reach into the range.
        if j > 0:
            prev = self.replicas[ids[j - 1]].region
            if not prev.end_key or prev.end_key > start:
                out.append(ids[j - 1])
        # Every region starting inside the range.
        while j < len(starts) and (not end or starts[j] < end):
            out.append(ids[j])
            j += 1
        return [i for i in out if i != exclude]

    def region_at(self, key: bytes) -> Replica | None:
        """The initialized replica whose range holds ``key``."""
        j = bisect.bisect_right(self._starts, key) - 1
        if j < 0:
            return None
        r = self.replicas[self._ids[j]]
        return r if r.region.contains(key) else None

    def _index(self, r: Replica) -> None:
        region = r.region
        clash = self.overlapping(region.start_key, region.end_key, exclude=r.region_id)
        if clash:
            raise ValueError(f"region {r.region_id} overlaps region(s) {clash} on this store")
        j = bisect.bisect_left(self._starts, region.start_key)
        self._starts.insert(j, region.start_key)
        self._ids.insert(j, r.region_id)

    def _unindex(self, region_id: int) -> None:
        try:
            j = self._ids.index(region_id)
        except ValueError:
            return
        del self._starts[j]
        del self._ids[j]
