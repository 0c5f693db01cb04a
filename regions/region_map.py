"""A sorted map of non-overlapping regions: key -> region, id -> region.

Theory of operation
-------------------
Regions are kept in a list sorted by ``start_key``, a parallel list of the
start keys (for ``bisect``), and a dict by id. A key belongs to the region
with the greatest start key ``<= key``, if that region's end is past the key:
one ``bisect_right`` and one ``contains``. Range queries start at that region
and walk right until a region starts at or after the range's end.

Invariants (checked by :meth:`RegionMap.check`):

* ``_starts[i] == _ordered[i].start_key`` and the list is strictly increasing;
* ``_by_id`` holds exactly the regions of ``_ordered``;
* no two regions overlap (each ends at or before the next one starts).

The map may have **gaps**: between a split and the report of a new sibling,
the sibling's range is simply unknown (:meth:`RegionMap.gaps` lists them).

Two ways in:

* :meth:`RegionMap.put` installs a descriptor unconditionally and removes every
  region it overlaps: the caller has decided it wins.
* :meth:`RegionMap.update` first asks :meth:`RegionMap.stale_against` (PD
  ``pkg/core/region.go``): a descriptor is stale when the known region of the
  same id has a newer epoch in either component, or when it overlaps another
  region with a greater ``version`` (that range has been split or merged
  since). A newer or equal descriptor replaces the older regions it overlaps.

:meth:`RegionMap.siblings` is TiKV's ``collect_sibling_region``: the regions a
client needs after EpochNotMatch, namely the current one and those that a
recent split carved out of it (to its left when ``right_derive``, since the
rightmost piece keeps the id).

The map holds the descriptors it is given; callers must not mutate a region
while it is in a map. Pure and sync; inserting and removing are O(n) list
moves, fine for tens of thousands of regions.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator
from typing import Final

from regions.epoch import is_stale
from regions.keyspace import KeyRange, end_key_after, format_range, overlaps
from regions.region import Region

__all__ = ["MAX_REGIONS_IN_ERROR", "RegionMap"]

#: At most this many siblings are returned with EpochNotMatch (TiKV's constant).
MAX_REGIONS_IN_ERROR: Final = 10


class RegionMap:
    """Non-overlapping regions by id and by key (see the module docstring)."""

    __slots__ = ("_by_id", "_ordered", "_starts")

    def __init__(self, regions: Iterable[Region] = ()) -> None:
        self._starts: list[bytes] = []
        self._ordered: list[Region] = []
        self._by_id: dict[int, Region] = {}
        for r in regions:
            self.put(r)

    # -- lookups ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ordered)

    def __iter__(self) -> Iterator[Region]:
        """Every region in key order (a snapshot: the map may change while iterating)."""
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

    def _first_overlap_index(self, start: bytes) -> int:
        """The index of the first region that may reach ``start`` or beyond."""
        i = bisect_right(self._starts, start) - 1
        if i < 0:
            return 0
        return i if end_key_after(self._ordered[i].end_key, start) else i + 1

    def overlapping(self, start_key: bytes, end_key: bytes) -> list[Region]:
        """The regions sharing a key with ``[start_key, end_key)``, in key order."""
        out: list[Region] = []
        for r in self._ordered[self._first_overlap_index(start_key) :]:
            if not end_key_after(end_key, r.start_key):
                break
            out.append(r)
        return out

    def scan(self, start_key: bytes, end_key: bytes = b"", limit: int = 0) -> list[Region]:
        """Up to ``limit`` (0: all) regions overlapping ``[start_key, end_key)``, in key order."""
        out: list[Region] = []
        for r in self._ordered[self._first_overlap_index(start_key) :]:
            if not end_key_after(end_key, r.start_key) or (limit and len(out) >= limit):
                break
            out.append(r)
        return out

    def gaps(self, start_key: bytes = b"", end_key: bytes = b"") -> list[KeyRange]:
        """The parts of ``[start_key, end_key)`` no region covers, in key order."""
        out: list[KeyRange] = []
        cursor = start_key
        for r in self.overlapping(start_key, end_key):
            if r.start_key > cursor:
                out.append((cursor, r.start_key))
            if not r.end_key:
                return out
            cursor = max(cursor, r.end_key)
        if end_key_after(end_key, cursor):
            out.append((cursor, end_key))
        return out

    # -- staleness --------------------------------------------------------------------

    def stale_against(self, region: Region) -> Region | None:
        """The known region that makes ``region`` stale, or None if ``region`` may be installed.

        Stale: the same id is known with an epoch newer in either component, or
        ``region`` overlaps another region whose ``version`` is greater.
        """
        known = self._by_id.get(region.id)
        if known is not None and is_stale(region.epoch, known.epoch):
            return known
        for other in self.overlapping(region.start_key, region.end_key):
            if other.id != region.id and other.epoch.version > region.epoch.version:
                return other
        return None

    # -- changes ----------------------------------------------------------------------

    def put(self, region: Region) -> list[Region]:
        """Insert or replace ``region``; remove and return every *other* region it overlaps.

        Raises:
            ValueError: an empty or reversed range.
        """
        if region.end_key and region.start_key >= region.end_key:
            raise ValueError(
                f"region {region.id} has an empty range "
                f"{format_range(region.start_key, region.end_key)}"
            )
        old = self._by_id.pop(region.id, None)
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

    def update(self, region: Region) -> list[Region] | None:
        """:meth:`put` ``region`` unless it is stale; None (nothing changed) if it is."""
        if self.stale_against(region) is not None:
            return None
        return self.put(region)

    def remove(self, region_id: int) -> Region | None:
        """Remove the region ``region_id`` if present; return it."""
        r = self._by_id.pop(region_id, None)
        if r is not None:
            self._remove_at(self._index_of(r))
        return r

    def _index_of(self, region: Region) -> int:
        i = bisect_left(self._starts, region.start_key)
        # Start keys are unique (regions do not overlap), so this is the one.
        if i >= len(self._ordered) or self._ordered[i] is not region:
            raise AssertionError(f"region map out of order at region {region.id}")
        return i

    def _remove_at(self, i: int) -> None:
        del self._starts[i]
        del self._ordered[i]

    # -- EpochNotMatch ----------------------------------------------------------------

    def siblings(
        self,
        region_id: int,
        requested_version: int,
        *,
        right_derive: bool = True,
        limit: int = MAX_REGIONS_IN_ERROR,
    ) -> list[Region]:
        """The current region, then the regions a split since ``requested_version`` made of it.

        The request's version tells how many splits it missed: the current
        region's version minus it. The walk goes left when ``right_derive`` (the
        new regions lie left of the one that kept the id), else right, and
        collects that many neighbours; a neighbour with a greater version shows
        a later split and extends the count (TiKV ``collect_sibling_region``).
        At most ``limit`` neighbours. Empty if the region is unknown.
        """
        current = self._by_id.get(region_id)
        if current is None:
            return []
        out = [current]
        max_version = current.epoch.version
        if requested_version >= max_version:
            return out
        wanted = max_version - requested_version
        i = self._index_of(current)
        step = -1 if right_derive else 1
        for _ in range(limit):
            i += step
            if not 0 <= i < len(self._ordered):
                break
            r = self._ordered[i]
            wanted -= 1
            if r.epoch.version >= max_version:
                wanted += r.epoch.version - max_version
                max_version = r.epoch.version
            out.append(r)
            if wanted <= 0:
                break
        return out

    # -- checking ---------------------------------------------------------------------

    def check(self) -> None:
        """Raise AssertionError if an invariant of the module docstring does not hold."""
        if len(self._starts) != len(self._ordered) or len(self._by_id) != len(self._ordered):
            raise AssertionError("region map indexes disagree in size")
        for i, r in enumerate(self._ordered):
            if self._starts[i] != r.start_key or self._by_id.get(r.id) is not r:
                raise AssertionError(f"region {r.id} is indexed wrongly")
            if i and overlaps(
                self._ordered[i - 1].start_key, self._ordered[i - 1].end_key, r.start_key, r.end_key
            ):
                raise AssertionError(f"regions {self._ordered[i - 1].id} and {r.id} overlap")
            if i and not self._starts[i - 1] < r.start_key:
                raise AssertionError("start keys are not strictly increasing")
