"""The routing table: which region owns which key, as a sorted map of start keys.

Theory of operation
-------------------
Regions are kept in a list sorted by ``start_key`` plus a dict by id. A key
belongs to the region with the greatest start key ``<= key`` if that region's
end is past the key (``bisect_right`` over the start keys, then one
``contains``). Regions in the table never overlap: :meth:`RegionMap.put`
removes every region the new one overlaps and returns them, so a caller that
has decided the new descriptor wins (a newer epoch, see
:mod:`multiraft.placement.heartbeats`) gets the split-or-merge replacement
for free. The table may have gaps: between a split and the heartbeat of the
new sibling, the sibling's range is simply not routed yet.

Sync and pure (no I/O): the service calls it from the trio thread only.
Inserting and removing are O(n) list moves, which is fine for the tens of
thousands of regions a placement service of this size routes.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator

from regions.region import Region

__all__ = ["RegionMap", "ranges_overlap"]


def ranges_overlap(a_start: bytes, a_end: bytes, b_start: bytes, b_end: bytes) -> bool:
    """Whether ``[a_start, a_end)`` and ``[b_start, b_end)`` share a key (empty end: +inf)."""
    return (not b_end or a_start < b_end) and (not a_end or b_start < a_end)


class RegionMap:
    """Non-overlapping regions by id and by key.

    Invariant: ``_starts`` is sorted and ``_starts[i] == _ordered[i].start_key``;
    ``_by_id`` holds exactly the regions of ``_ordered``; no two regions overlap.
    """

    __slots__ = ("_by_id", "_ordered", "_starts")

    def __init__(self, regions: Iterable[Region] = ()) -> None:
        self._starts: list[bytes] = []
        self._ordered: list[Region] = []
        self._by_id: dict[int, Region] = {}
        for r in regions:
            self.put(r)

    def __len__(self) -> int:
        return len(self._ordered)

    def __iter__(self) -> Iterator[Region]:
        """Every region, in key order."""
        return iter(list(self._ordered))

    def __contains__(self, region_id: object) -> bool:
        return region_id in self._by_id

    def get(self, region_id: int) -> Region | None:
        return self._by_id.get(region_id)

    def get_by_key(self, key: bytes) -> Region | None:
        """The region holding ``key``, or None if the key falls in a gap."""
        i = bisect_right(self._starts, key) - 1
        if i < 0:
            return None
        r = self._ordered[i]
        return r if r.contains(key) else None

    def overlapping(self, start_key: bytes, end_key: bytes) -> list[Region]:
        """The regions sharing a key with ``[start_key, end_key)``, in key order."""
        # The region starting at or before start_key may reach into the range; after it,
        # every region that starts before end_key does.
        i = max(bisect_right(self._starts, start_key) - 1, 0)
        out = []
        for r in self._ordered[i:]:
            if end_key and r.start_key >= end_key:
                break
            if ranges_overlap(r.start_key, r.end_key, start_key, end_key):
                out.append(r)
        return out

    def scan(self, start_key: bytes, end_key: bytes, limit: int = 0) -> list[Region]:
        """Up to ``limit`` (0: all) regions overlapping ``[start_key, end_key)``, in key order."""
        found = self.overlapping(start_key, end_key)
        return found[:limit] if limit else found

    def put(self, region: Region) -> list[Region]:
        """Insert or replace ``region``; remove and return every *other* region it overlaps.

        The caller decides beforehand that ``region`` wins (its epoch is newer).
        """
        old = self._by_id.get(region.id)
        if old is not None:
            self._remove_at(self._index_of(old))
        removed = self.overlapping(region.start_key, region.end_key)
        for r in removed:
            self._remove_at(self._index_of(r))
            del self._by_id[r.id]
        i = bisect_left(self._starts, region.start_key)
        self._starts.insert(i, region.start_key)
        self._ordered.insert(i, region)
        self._by_id[region.id] = region
        return removed

    def remove(self, region_id: int) -> Region | None:
        """Remove the region ``region_id`` if present; return it."""
        r = self._by_id.pop(region_id, None)
        if r is not None:
            self._remove_at(self._index_of(r))
        return r

    def _index_of(self, region: Region) -> int:
        i = bisect_left(self._starts, region.start_key)
        # Start keys are unique (regions do not overlap), so this is the one.
        assert self._ordered[i] is region, "routing table out of order"
        return i

    def _remove_at(self, i: int) -> None:
        del self._starts[i]
        del self._ordered[i]
