"""What one ready round did, counted in plain ints and published to Prometheus once.

Each prometheus_client update takes a lock, and a round may touch thousands of regions
and messages, so the round counts into :class:`RoundStats` and :meth:`RoundStats.publish`
turns the totals into one ``inc``/``observe`` per series at the end of the round
(``multiraft/metrics/raft.py``, hot-path rule). ``RoundStats`` also carries the round's
deferred work (unreachable peers to report after the advances, reads to serve at once).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from multiraft.metrics import StoreServerMetrics
from multiraft.raft import MessageType
from multiraft.storage.write_batch import WriteBatch
from multiraft.store.apply import ApplyContext
from multiraft.store.reads import ReadRequest
from multiraft.wire.messages import RaftEnvelope

if TYPE_CHECKING:
    from multiraft.store.replica import Replica

__all__ = ["RoundStats", "inc"]


def inc(d: dict[str, int], key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


@dataclass(slots=True)
class RoundStats:
    """Counters of one round, and the work it defers to its end."""

    sent: dict[MessageType, int] = field(default_factory=dict)
    received: dict[MessageType, int] = field(default_factory=dict)
    dropped: dict[tuple[MessageType, str], int] = field(default_factory=dict)
    proposals: dict[str, int] = field(default_factory=dict)
    reads: dict[str, int] = field(default_factory=dict)
    leader_changes: int = 0
    #: Leader messages were handed to the transport before the commit.
    leader_messages: bool = False
    #: ``(replica, peer id)`` to report unreachable once every Ready is advanced.
    unreachable: list[tuple[Replica, int]] = field(default_factory=list)
    #: Lease and stale reads to serve from this round's read transaction.
    immediate: list[tuple[Replica, ReadRequest]] = field(default_factory=list)
    #: Stale replicas tombstoned in this round's batch: leave the router after the commit.
    destroyed: list[Replica] = field(default_factory=list)
    #: ``is_tombstone`` notices for removed senders, sent after the commit.
    gc_notices: list[RaftEnvelope] = field(default_factory=list)

    def drop(self, t: MessageType, reason: str) -> None:
        key = (t, reason)
        self.dropped[key] = self.dropped.get(key, 0) + 1

    def publish(
        self,
        m: StoreServerMetrics,
        batch: WriteBatch,
        ctx: ApplyContext,
        *,
        duration: float,
        apply_seconds: float,
        dirty: int,
    ) -> None:
        """Add this round to the metrics (the batch has been committed)."""
        raft = m.raft
        st = batch.statistics()
        raft.ready_rounds.inc()
        raft.ready_duration.observe(max(duration, 0.0))
        raft.ready_dirty_regions.observe(dirty)
        if st.entries:
            raft.appended_entries.inc(st.entries)
            raft.appended_bytes.inc(st.entry_bytes)
        if not batch.is_empty():
            # LMDB's commit is the fsync (data pages, then the meta page): one figure for both.
            m.storage.write_txn_duration.observe(st.commit_seconds)
            m.storage.fsync_duration.observe(st.commit_seconds)
            m.storage.write_batch_entries.observe(st.entries + st.data_ops + st.state_records)
        if ctx.entries:
            raft.applied_entries.inc(ctx.entries)
            raft.apply_duration.observe(apply_seconds + st.commit_seconds)
        for lat in ctx.commit_latency:
            raft.commit_duration.observe(max(lat, 0.0))
        for t, n in self.sent.items():
            raft.messages_sent.labels(t.name).inc(n)
        for t, n in self.received.items():
            raft.messages_received.labels(t.name).inc(n)
        for (t, reason), n in self.dropped.items():
            raft.messages_dropped.labels(t.name, reason).inc(n)
        for label, n in self.proposals.items():
            raft.proposals.labels(label).inc(n)
        for kind, n in self.reads.items():
            raft.reads.labels(kind).inc(n)
        if self.leader_changes:
            raft.leader_changes.inc(self.leader_changes)
