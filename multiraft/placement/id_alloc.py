"""The cluster's id allocator: u64 ids, unique and never reused, even across restarts.

Theory of operation (PD ``pkg/id/id.go``)
-----------------------------------------
Store, region and peer ids all come from here. The allocator persists a
*high-water mark*: every id up to and including it may have been handed out.
Ids are handed out from memory while they stay at or below the mark; the first
allocation that would pass it first persists a new mark ``window`` ids further
on, and only then returns. After a restart the allocator starts just above the
persisted mark, so the ids reserved but not handed out before the restart are
skipped, never reused: ids jump by up to ``window`` at each restart.

Ids start at 1 (0 means "none" throughout the protocol).

Invariant: ``next_id <= high_water + 1``, and ``high_water`` is durable before any
id at or below it is returned.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

__all__ = ["DEFAULT_WINDOW", "MAX_ALLOC", "IdAllocator", "IdAllocatorStatistics"]

#: Ids reserved per persisted step (PD's ``DefaultAllocStep``).
DEFAULT_WINDOW = 1000
#: Most ids one request may take.
MAX_ALLOC = 100_000
_U64_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class IdAllocatorStatistics:
    next_id: int
    high_water: int
    persists: int
    allocated: int


class IdAllocator:
    """Hands out ids; persists its high-water mark through ``persist`` before using it.

    Args:
        high_water: the persisted mark (0 on a fresh cluster).
        persist: makes a new mark durable (called with the new mark; awaited before any
            id under it is returned). If it raises, no id is handed out.
        window: ids reserved per persisted step.

    Safe for concurrent tasks: one allocation (and its persist) runs at a time.

    Example::

        alloc = IdAllocator(meta.id_high_water, save_high_water)
        first = await alloc.alloc(3)   # ids first, first + 1, first + 2
    """

    def __init__(
        self,
        high_water: int,
        persist: Callable[[int], Awaitable[None]],
        *,
        window: int = DEFAULT_WINDOW,
    ) -> None:
        if not 0 <= high_water < _U64_MAX:
            raise ValueError(f"high-water mark {high_water} out of range")
        if window < 1:
            raise ValueError("window must be at least 1")
        self._high_water = high_water
        self._next = high_water + 1
        self._persist = persist
        self._window = window
        self._lock = trio.Lock()
        self._persists = 0
        self._allocated = 0

    @property
    def high_water(self) -> int:
        return self._high_water

    async def alloc(self, count: int = 1) -> int:
        """Reserve ``count`` consecutive fresh ids; return the first.

        Raises:
            ValueError: ``count`` outside ``1..MAX_ALLOC``, or the id space is exhausted.
            Whatever ``persist`` raises (then nothing was handed out).
        """
        if not 1 <= count <= MAX_ALLOC:
            raise ValueError(f"can allocate 1 to {MAX_ALLOC} ids at once, not {count}")
        async with self._lock:
            first = self._next
            last = first + count - 1
            if last > _U64_MAX:
                raise ValueError("the u64 id space is exhausted")
            if last > self._high_water:
                mark = min(last + self._window, _U64_MAX)
                await self._persist(mark)
                self._high_water = mark
                self._persists += 1
            self._next = last + 1
            self._allocated += count
            return first

    def statistics(self) -> IdAllocatorStatistics:
        return IdAllocatorStatistics(self._next, self._high_water, self._persists, self._allocated)
