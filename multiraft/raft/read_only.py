"""ReadIndex bookkeeping on a leader: which reads wait for which heartbeat quorum.

Theory of operation
-------------------
With ``ReadOnlyOption.Safe`` a leader answers a read only after a quorum has
confirmed it is still leader *after* the read arrived (Raft thesis §6.4). Each
request is keyed by its context bytes (callers must make them unique); the
leader records ``committed`` at receipt, broadcasts a heartbeat carrying the
context, and collects acknowledgements. Once a quorum acknowledges a context,
that request *and every request queued before it* are released: a later
confirmation proves leadership for earlier requests too.

Invariant: ``read_index_queue`` holds exactly the keys of ``pending_read_index``,
in arrival order.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from multiraft.raft.errors import RaftFatal
from multiraft.raft.types import Message, ReadOnlyOption, ReadState

__all__ = ["ReadIndexStatus", "ReadOnly", "ReadOnlyOption", "ReadState"]


@dataclass(slots=True)
class ReadIndexStatus:
    """One pending read: the request, the commit index at receipt, and who has acked."""

    req: Message
    index: int
    acks: set[int] = field(default_factory=set)


class ReadOnly:
    """The queue of pending Safe reads on a leader."""

    __slots__ = ("option", "pending_read_index", "read_index_queue")

    def __init__(self, option: ReadOnlyOption = ReadOnlyOption.Safe) -> None:
        self.option = option
        self.pending_read_index: dict[bytes, ReadIndexStatus] = {}
        self.read_index_queue: deque[bytes] = deque()

    def add_request(self, index: int, req: Message, self_id: int) -> None:
        """Queue ``req`` (its context is ``entries[0].data``); duplicates are ignored."""
        ctx = req.entries[0].data
        if ctx in self.pending_read_index:
            return
        self.pending_read_index[ctx] = ReadIndexStatus(req, index, {self_id})
        self.read_index_queue.append(ctx)

    def recv_ack(self, id: int, ctx: bytes) -> set[int] | None:
        """Record that ``id`` confirmed leadership for ``ctx``; the acks so far, or None."""
        status = self.pending_read_index.get(ctx)
        if status is None:
            return None
        status.acks.add(id)
        return status.acks

    def advance(self, ctx: bytes) -> list[ReadIndexStatus]:
        """Release ``ctx`` and every request queued before it, in order."""
        if ctx not in self.pending_read_index:
            return []
        released: list[ReadIndexStatus] = []
        while self.read_index_queue:
            key = self.read_index_queue.popleft()
            status = self.pending_read_index.pop(key, None)
            if status is None:
                raise RaftFatal("cannot find corresponding read state from pending map")
            released.append(status)
            if key == ctx:
                break
        return released

    def last_pending_request_ctx(self) -> bytes | None:
        return self.read_index_queue[-1] if self.read_index_queue else None

    def pending_read_count(self) -> int:
        return len(self.read_index_queue)
