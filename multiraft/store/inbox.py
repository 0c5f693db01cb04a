"""The ready loop's inbox: everything that happens to a store, in arrival order.

Theory of operation
-------------------
Request handlers, the transport, the ticker and the placement loop never touch
a replica: they :meth:`Inbox.put` an item and, when they need an answer, wait on
a :class:`~multiraft.store.proposals.Waiter` inside it. The ready loop takes the
whole inbox at the start of each round (:meth:`Inbox.take`), so a round's cost
is one swap, not one await per message.

Bounds (a full inbox answers instead of growing without limit):

* client requests: over ``max_requests`` waiting, :meth:`put_request` refuses
  (the handler answers ServerIsBusy);
* raft envelopes: over ``max_messages`` waiting, :meth:`put_raft_batch` drops
  the batch (Raft retransmits; the loop counts the drop);
* ticks are a counter, not items: a loop that falls behind runs the missed
  ticks in one round instead of queueing thousands of wake-ups;
* control items (reports, bootstrap regions, snapshots) are few and always
  accepted.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from multiraft.raft import SnapshotStatus
from multiraft.store.proposals import Answer, Waiter
from multiraft.store.snapshots import ReceivedStream
from multiraft.wire.command_codec import RaftCmd
from multiraft.wire.messages import (
    AdminRequest,
    AdminResponse,
    KvRequest,
    RaftBatch,
    RaftEnvelope,
    SnapshotAck,
)
from regions.region import Region

__all__ = [
    "AdminItem",
    "AdminProposeItem",
    "BootstrapItem",
    "Inbox",
    "InboxStatistics",
    "Item",
    "KvItem",
    "SnapshotItem",
    "SnapshotReportItem",
    "UnreachableItem",
]


@dataclass(slots=True)
class KvItem:
    """A client request; ``cmd``/``data`` are its encoded command when it is a write."""

    req: KvRequest
    waiter: Waiter[Answer]
    received: float
    cmd: RaftCmd | None = None
    data: bytes = b""


@dataclass(slots=True)
class AdminItem:
    req: AdminRequest
    waiter: Waiter[AdminResponse]


@dataclass(slots=True)
class AdminProposeItem:
    """An admin command to propose through the region's Raft log (split, membership change,
    log compaction), built with the epoch it was made for; answered once applied."""

    cmd: RaftCmd
    waiter: Waiter[Answer]


@dataclass(slots=True)
class UnreachableItem:
    """The transport dropped these envelopes to ``store_id`` (connection lost, queue full)."""

    store_id: int
    envelopes: list[RaftEnvelope]


@dataclass(slots=True)
class SnapshotReportItem:
    """A snapshot this store sent finished or failed."""

    region_id: int
    to_peer_id: int
    status: SnapshotStatus


@dataclass(slots=True)
class SnapshotItem:
    """A complete snapshot stream received for a replica of this store."""

    stream: ReceivedStream
    waiter: Waiter[SnapshotAck]


@dataclass(slots=True)
class BootstrapItem:
    """A region placement asks this store to create (the first region of the cluster)."""

    region: Region


Item = (
    KvItem
    | AdminItem
    | AdminProposeItem
    | RaftBatch
    | UnreachableItem
    | SnapshotReportItem
    | SnapshotItem
    | BootstrapItem
)


@dataclass(frozen=True, slots=True)
class InboxStatistics:
    items: int
    requests: int
    envelopes: int
    ticks: int
    refused_requests: int
    dropped_batches: int


class Inbox:
    """Items for the ready loop; :meth:`take` empties it in one step."""

    def __init__(self, *, max_requests: int, max_messages: int) -> None:
        self._items: list[Item] = []
        self._requests = 0
        self._envelopes = 0
        self._ticks = 0
        self._max_requests = max_requests
        self._max_messages = max_messages
        self._event = trio.Event()
        self.refused_requests = 0
        self.dropped_batches = 0

    def __len__(self) -> int:
        return len(self._items) + (1 if self._ticks else 0)

    def put(self, item: Item) -> None:
        """Queue a control item (never refused)."""
        self._items.append(item)
        self._event.set()

    def put_request(self, item: KvItem | AdminItem) -> bool:
        """Queue a client request; False if too many are waiting already."""
        if self._requests >= self._max_requests:
            self.refused_requests += 1
            return False
        self._requests += 1
        self._items.append(item)
        self._event.set()
        return True

    def put_raft_batch(self, batch: RaftBatch) -> bool:
        """Queue a batch of raft envelopes; False (dropped) if too many are waiting."""
        n = len(batch.envelopes)
        if self._envelopes + n > self._max_messages:
            self.dropped_batches += 1
            return False
        self._envelopes += n
        self._items.append(batch)
        self._event.set()
        return True

    def tick(self) -> None:
        """One raft tick is due for every replica."""
        self._ticks += 1
        self._event.set()

    def take(self) -> tuple[list[Item], int]:
        """Everything queued, and the number of ticks due; the inbox is then empty."""
        items, ticks = self._items, self._ticks
        self._items = []
        self._ticks = 0
        self._requests = 0
        self._envelopes = 0
        return items, ticks

    async def wait(self) -> None:
        """Return once something is queued (at once if it already is)."""
        if not self._items and not self._ticks:
            await self._event.wait()
        self._event = trio.Event()

    def busy(self) -> bool:
        """More than half of the request bound is waiting."""
        return self._requests * 2 > self._max_requests

    def statistics(self) -> InboxStatistics:
        return InboxStatistics(len(self._items), self._requests, self._envelopes, self._ticks,
                               self.refused_requests, self.dropped_batches)  # fmt: skip
