"""Proposals in flight: who is waiting for which log entry, answered exactly once.

Theory of operation
-------------------
A client write reaches the ready loop as a :class:`PendingWrite`. At the start
of the next round every write that arrived for a region is proposed with ONE
``RawNode.propose_batch`` call (one entry per command). The leader appends them
at ``last_index + 1 ..`` in its current term, so each becomes a
:class:`Proposal` keyed by ``(index, term)`` in the region's
:class:`ProposalQueue`, in index order.

When a committed entry ``(index, term)`` is applied, :meth:`ProposalQueue.pop_applied`
hands back the proposal that made it (same index and term) and every proposal
the log has passed without applying it: one at a lower index, or at the same
index with another term, lost its entry to a newer leader (StaleCommand). When
the replica's term changes or it stops leading, every proposal still queued is
failed with StaleCommand; when the replica is destroyed, with RegionNotFound.

Every waiter is a :class:`Waiter`: the first answer wins, later ones are
ignored and reported (``set`` returns False), so "answered exactly once" holds
whatever path answers first (the apply, a term change, a timeout that
abandoned it).

The answer of an applied proposal is *held* by the ready loop until the batch
holding its apply has committed: a client never hears "ok" for a write that a
crash could still undo.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

import trio

from multiraft.wire.command_codec import RaftCmd
from multiraft.wire.messages import KvResult, RequestError

__all__ = ["Answer", "PendingWrite", "Proposal", "ProposalQueue", "Waiter"]

T = TypeVar("T")

#: What a KV request is answered with.
Answer = KvResult | RequestError


class Waiter(Generic[T]):
    """A one-shot answer slot: set once by the ready loop, awaited by one request task."""

    __slots__ = ("_event", "_set", "_value")

    def __init__(self) -> None:
        self._event = trio.Event()
        self._value: T | None = None
        self._set = False

    def set(self, value: T) -> bool:
        """Answer; True the first time, False (and no effect) after that."""
        if self._set:
            return False
        self._set = True
        self._value = value
        self._event.set()
        return True

    def abandon(self) -> None:
        """The requester stopped waiting (timeout, cancel): later answers are dropped."""
        self._set = True

    @property
    def answered(self) -> bool:
        return self._set

    async def wait(self) -> T:
        """The answer, once set."""
        await self._event.wait()
        value = self._value
        assert value is not None
        return value


@dataclass(slots=True)
class PendingWrite:
    """A client write accepted by the loop and not yet proposed."""

    cmd: RaftCmd
    data: bytes
    waiter: Waiter[Answer]
    #: ``trio.current_time()`` when the request arrived.
    received: float


@dataclass(slots=True)
class Proposal:
    """A write proposed at ``(index, term)``, waiting for that entry to be applied."""

    index: int
    term: int
    cmd: RaftCmd
    waiter: Waiter[Answer]
    #: When it was proposed: the lease renews from it once the entry commits.
    proposed: float


class ProposalQueue:
    """One region's proposals, in index order. Invariant: indexes strictly increase."""

    __slots__ = ("_q",)

    def __init__(self) -> None:
        self._q: deque[Proposal] = deque()

    def __len__(self) -> int:
        return len(self._q)

    def __iter__(self) -> Iterator[Proposal]:
        return iter(self._q)

    def push(self, p: Proposal) -> None:
        """Queue ``p``; it must come after every queued proposal.

        Raises:
            ValueError: ``p.index`` is not above the last queued index.
        """
        if self._q and p.index <= self._q[-1].index:
            raise ValueError(f"proposal at {p.index} after one at {self._q[-1].index}")
        self._q.append(p)

    def head(self) -> Proposal | None:
        """The proposal with the lowest index, if any."""
        return self._q[0] if self._q else None

    def pop_applied(self, index: int, term: int) -> tuple[Proposal | None, list[Proposal]]:
        """The proposal applied by entry ``(index, term)``, and those the log passed over.

        Returns ``(match, stale)``: ``match`` made this entry (None if no queued
        proposal did); ``stale`` lost their entries (lower index, or same index
        and another term).
        """
        q = self._q
        if not q or q[0].index > index:
            return None, []
        stale: list[Proposal] = []
        while q and q[0].index < index:
            stale.append(q.popleft())
        if q and q[0].index == index:
            p = q.popleft()
            if p.term == term:
                return p, stale
            stale.append(p)
        return None, stale

    def take_all(self) -> list[Proposal]:
        """Remove and return every queued proposal."""
        out = list(self._q)
        self._q.clear()
        return out

    def take_older_than(self, term: int) -> list[Proposal]:
        """Remove and return the proposals made in a term before ``term``."""
        q = self._q
        if not q or all(p.term >= term for p in q):
            return []
        old = [p for p in q if p.term < term]
        keep = [p for p in q if p.term >= term]
        q.clear()
        q.extend(keep)
        return old
