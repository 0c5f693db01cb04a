"""Metrics of a store's Raft machinery: the ready loop, messages, proposals, apply, admin commands.

Subsystem ``raft``; emitted by the store (``multiraft.store``: ready loop, router, apply, split
and conf-change apply, snapshots). Every metric is per *store*: counts are summed over all the
regions the store hosts, never labelled by region (see ``_common.py``). Cluster-wide, an event
applied on every replica (a split, a conf change) is counted once per replica.

Hot-path rule: a ready round may touch thousands of regions, and each prometheus_client update
takes a lock, so the loop accumulates plain ints during a round and publishes them once at its
end (``inc(n)``, one ``observe`` per round), and caches the ``labels(...)`` children it uses often.

Label values are closed sets, listed below as constants so emitters and dashboards agree:
message ``type`` is the :class:`multiraft.raft.MessageType` member name (``"MsgAppend"``).
"""

from __future__ import annotations

from typing import Final

from prometheus_client import CollectorRegistry

from multiraft.metrics._common import (
    COUNT_BUCKETS,
    ROUND_DURATION_BUCKETS,
    MetricFactory,
    each,
)
from multiraft.raft import ConfChangeType, MessageType

#: Message types that cross the network (the local ones, MsgHup/MsgBeat/MsgUnreachable/
#: MsgSnapStatus/MsgCheckQuorum, never reach the transport). Preset at zero so the
#: "heartbeat share of all messages" ratio is defined from the first scrape.
WIRE_MESSAGE_TYPES: Final = tuple(
    t.name
    for t in (
        MessageType.MsgPropose,
        MessageType.MsgAppend,
        MessageType.MsgAppendResponse,
        MessageType.MsgRequestVote,
        MessageType.MsgRequestVoteResponse,
        MessageType.MsgRequestPreVote,
        MessageType.MsgRequestPreVoteResponse,
        MessageType.MsgSnapshot,
        MessageType.MsgHeartbeat,
        MessageType.MsgHeartbeatResponse,
        MessageType.MsgTransferLeader,
        MessageType.MsgTimeoutNow,
        MessageType.MsgReadIndex,
        MessageType.MsgReadIndexResp,
    )
)

#: Why the store dropped an incoming raft message instead of stepping it (TiKV
#: ``raft_dropped_message_total``): stale-peer and epoch churn show up here.
MESSAGE_DROP_REASONS: Final = (
    "region_not_found",  # no replica here and the message may not create one
    "region_tombstone",  # the region (or this peer of it) was removed from this store
    "stale_epoch",  # the sender's region epoch is older than ours
    "stale_peer",  # from a peer id lower than / removed from the region's current peers
    "region_overlap",  # creating the replica would overlap a region this store has
    "mismatch_store",  # addressed to another store id
    "applying_snapshot",  # the replica is installing a snapshot
    "step_failed",  # RawNode.step raised (e.g. StepPeerNotFound)
    "inbox_full",  # the store's inbox held too many envelopes (the loop is behind)
)

#: Outcome of one proposal, counted once, when the proposer gets its answer.
PROPOSAL_RESULTS: Final = (
    "ok",  # committed and applied
    "dropped",  # raft refused it (ProposalDropped: no leader, leader transfer, pending conf change)
    "not_leader",  # this replica is not the leader (client gets a leader hint)
    "epoch_not_match",  # the request's region epoch is stale
    "busy",  # the store's proposal queue is full (ServerIsBusy)
    "region_not_found",
    "key_not_in_region",
    "stale_command",  # leadership or term changed before it committed
)

#: How a read was served (linearizable by ReadIndex, by a valid lease, or stale on request).
READ_KINDS: Final = ("read_index", "lease", "stale")

#: Outcome of a snapshot generation or application.
SNAPSHOT_RESULTS: Final = ("ok", "failed")

#: Outcome of a snapshot stream this store received (before the replica's own checks).
SNAPSHOT_RECEIVE_RESULTS: Final = (
    "ok",  # complete and checked, staged in LMDB and handed to the ready loop
    "rejected",  # malformed, for another region, larger than max_snapshot_bytes, or cut short
    "busy",  # refused at once: max_receiving_snapshots streams were being received
    "failed",  # the connection broke or the store stopped in the middle
)

#: Conf-change ``type`` label values: :class:`multiraft.raft.ConfChangeType` member names,
#: one count per single change (a joint change of two steps counts two).
CONF_CHANGE_TYPES: Final = tuple(t.name for t in ConfChangeType)

#: Outcome of one split-check scan (``multiraft.store.split_check``).
SPLIT_CHECK_RESULTS: Final = (
    "split",  # over the thresholds with split keys: a split was requested
    "no_split",  # measured; no split needed or no key to split at
    "stale",  # the region split, merged or was replaced during the scan: result dropped
    "failed",  # the scan raised (storage error)
)

#: Outcome of one CompactLog proposal made by log GC (``multiraft.store.log_gc``).
LOG_COMPACT_RESULTS: Final = ("ok", "error", "timeout")


class RaftMetrics:
    """The ``multiraft_raft_*`` metrics of one store process.

    Args:
        registry: the process's registry (tests: a fresh ``CollectorRegistry()``).

    Invariant: constructing it registers every metric below into ``registry`` and nothing
    elsewhere; a second instance needs a second registry.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        f = MetricFactory(registry, "raft")

        # -- the ready loop (ARCHITECTURE.md section 3) ------------------------------------
        #: Ready rounds run (each drains inputs, persists, sends, applies, advances).
        self.ready_rounds = f.counter("ready_rounds", "Ready rounds run by the store loop.")
        #: Wall time of one ready round, from draining inputs to the last advance().
        self.ready_duration = f.histogram(
            "ready_handling_duration",
            "Time to handle one ready round, from draining inputs to advance().",
            unit="seconds",
            buckets=ROUND_DURATION_BUCKETS,
        )
        #: Regions visited in one round: how well idle regions are skipped and rounds batch.
        self.ready_dirty_regions = f.histogram(
            "ready_dirty_regions",
            "Dirty regions (regions that received input) visited in one ready round.",
            buckets=COUNT_BUCKETS,
        )
        #: Raft log entries persisted by ready rounds (all regions).
        self.appended_entries = f.counter(
            "appended_entries", "Raft log entries persisted by ready rounds."
        )
        #: Encoded bytes of those entries.
        self.appended_bytes = f.counter(
            "appended", "Bytes of raft log entries persisted by ready rounds.", unit="bytes"
        )

        # -- messages, as the store sees them (the transport has its own view) -------------
        #: Raft messages handed to the transport, by type.
        self.messages_sent = f.counter(
            "messages_sent",
            "Raft messages handed to the transport by the ready loop, by message type.",
            ["type"],
            initial=each(*WIRE_MESSAGE_TYPES),
        )
        #: Raft messages stepped into a replica, by type.
        self.messages_received = f.counter(
            "messages_received",
            "Raft messages routed to and stepped into a replica, by message type.",
            ["type"],
            initial=each(*WIRE_MESSAGE_TYPES),
        )
        #: Incoming raft messages the store dropped, by type and reason.
        self.messages_dropped = f.counter(
            "messages_dropped",
            "Incoming raft messages dropped by the store instead of stepped, by type and reason.",
            ["type", "reason"],
        )

        # -- proposals, commit, apply ------------------------------------------------------
        #: Proposals by final result (exactly one count per proposal).
        self.proposals = f.counter(
            "proposals",
            "Proposals by the result returned to the proposer.",
            ["result"],
            initial=each(*PROPOSAL_RESULTS),
        )
        #: Time from propose() on the leader to the entry being committed (replication +
        #: quorum fsync): TiKV's commit_log_duration.
        self.commit_duration = f.histogram(
            "commit_log_duration",
            "Time from proposing an entry on the leader to seeing it committed.",
            unit="seconds",
            buckets=ROUND_DURATION_BUCKETS,
        )
        #: Time to apply one round's committed entries (all regions, including the write).
        self.apply_duration = f.histogram(
            "apply_duration",
            "Time to apply the committed entries of one ready round.",
            unit="seconds",
            buckets=ROUND_DURATION_BUCKETS,
        )
        #: Committed entries applied (normal and admin).
        self.applied_entries = f.counter("applied_entries", "Committed entries applied.")
        #: Reads served, by how linearizability was obtained.
        self.reads = f.counter(
            "reads",
            "Reads served, by kind (read_index, lease, stale).",
            ["kind"],
            initial=each(*READ_KINDS),
        )
        #: Leader changes observed by replicas on this store (soft state's leader id moved to
        #: a different known leader, this store's peer included).
        self.leader_changes = f.counter(
            "leader_changes",
            "Leader changes observed by the replicas on this store.",
        )

        # -- snapshots, split, conf change (issue 5) ---------------------------------------
        #: Snapshots generated for followers, by result.
        self.snapshots_generated = f.counter(
            "snapshots_generated",
            "Snapshots generated for lagging or new peers, by result.",
            ["result"],
            initial=each(*SNAPSHOT_RESULTS),
        )
        #: Snapshots installed on replicas of this store, by result.
        self.snapshots_applied = f.counter(
            "snapshots_applied",
            "Snapshots applied to replicas on this store, by result.",
            ["result"],
            initial=each(*SNAPSHOT_RESULTS),
        )
        #: Bytes of generated snapshots.
        self.snapshot_generated_bytes = f.counter(
            "snapshot_generated", "Bytes of snapshots generated.", unit="bytes"
        )
        #: Bytes of applied snapshots.
        self.snapshot_applied_bytes = f.counter(
            "snapshot_applied", "Bytes of snapshots applied.", unit="bytes"
        )
        #: Snapshot streams received, by result (Busy: over max_receiving_snapshots).
        self.snapshots_received = f.counter(
            "snapshots_received",
            "Snapshot streams received by this store, by result.",
            ["result"],
            initial=each(*SNAPSHOT_RECEIVE_RESULTS),
        )
        #: Snapshot streams being received and staged right now.
        self.snapshots_receiving = f.gauge(
            "snapshots_receiving", "Snapshot streams being received and staged right now."
        )
        #: Bytes of received snapshots staged in LMDB: being received, or waiting to be applied.
        self.snapshot_staged_bytes = f.gauge(
            "snapshot_staged",
            "Bytes of received snapshot streams staged in LMDB, not yet applied or dropped.",
            unit="bytes",
        )
        #: Split admin commands applied (one per parent region split, whatever the new count).
        self.splits = f.counter("splits", "Split admin commands applied on this store.")
        #: Single membership changes applied, by ConfChangeType name.
        self.conf_changes = f.counter(
            "conf_changes",
            "Membership changes applied on this store, by ConfChangeType name.",
            ["type"],
            initial=each(*CONF_CHANGE_TYPES),
        )

        # -- split check and log GC (issue 5) ----------------------------------------------
        #: Split-check scans of leader regions, by result.
        self.split_checks = f.counter(
            "split_checks",
            "Split-check scans of leader regions' data, by result.",
            ["result"],
            initial=each(*SPLIT_CHECK_RESULTS),
        )
        #: Time of one split-check scan (a worker thread walking the region's data).
        self.split_check_duration = f.histogram(
            "split_check_duration",
            "Time to scan one region's data for the split check.",
            unit="seconds",
            buckets=ROUND_DURATION_BUCKETS,
        )
        #: CompactLog commands proposed by this store's leaders, by result.
        self.log_compact_proposals = f.counter(
            "log_compact_proposals",
            "CompactLog commands proposed by log GC on this store's leaders, by result.",
            ["result"],
            initial=each(*LOG_COMPACT_RESULTS),
        )
        #: CompactLog commands applied on this store that moved a replica's first index.
        self.log_compactions = f.counter(
            "log_compactions", "CompactLog commands applied that truncated a replica's log."
        )
        #: Raft log entries deleted from disk below the truncated index.
        self.log_gc_deleted_entries = f.counter(
            "log_gc_deleted_entries",
            "Raft log entries deleted from disk by log GC, below the truncated index.",
        )
