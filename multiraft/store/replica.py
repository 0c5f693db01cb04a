"""Replica: one region's peer on this store: its RawNode, storage, region and waiting work.

Theory of operation
-------------------
A replica is a passive object owned by the ready loop (``ready_loop.py``): only
the loop's task calls its RawNode, and only between two awaits, so a RawNode
is never touched between ``ready()`` and ``advance_append_async()`` by anyone
else. Request handlers never touch a replica; they post to the loop's inbox.

What a replica holds:

* ``raw_node`` and ``storage`` (:class:`~multiraft.storage.RaftStorage`): the
  Raft group member and its log, with ``Config.applied`` = the persisted
  applied index, so a restart never re-applies an entry;
* ``region`` (the descriptor as this replica has *applied* it) and
  ``peer_state``; a replica is *initialized* once its region has peers. An
  uninitialized replica (created by a vote or first heartbeat, empty
  ConfState, log at 0) serves nothing and waits for a snapshot;
* the work waiting on Raft: ``pending_writes`` (to propose this round),
  ``proposals`` (proposed, keyed by index and term), ``pending_reads`` (to
  batch into this round's ReadIndex) and ``read_batches`` (ReadIndex in flight
  or waiting for apply);
* the leader ``lease`` and ``applied_term`` for lease reads;
* ``known_peers``: every peer seen in an envelope, to address replies while
  the region descriptor does not list the sender yet (uninitialized replicas).

Invariants: ``applied_index == storage.applied_index()`` between rounds;
``region.id == region_id``; a destroyed replica has no waiters left.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass

from multiraft.metrics.regions import RegionSummary, region_role
from multiraft.raft import Config, Message, RawNode, StateRole
from multiraft.storage.raft_storage import RaftStorage
from multiraft.storage.staging import StagedSnapshot
from multiraft.store.proposals import PendingWrite, ProposalQueue
from multiraft.store.reads import Lease, ReadBatch, ReadRequest, lease_duration
from multiraft.wire.messages import (
    BatchPut,
    Cas,
    Delete,
    EpochNotMatch,
    Get,
    KeyNotInRegion,
    KvRequest,
    NotLeader,
    Put,
    RaftEnvelope,
    RegionNotFound,
    RequestError,
    Scan,
)
from regions.epoch import EpochChangeTracker
from regions.local_state import PeerState
from regions.region import Peer, Region, RegionEpoch

__all__ = ["RaftSettings", "ReceivedSnapshot", "Replica", "copy_region"]

log = logging.getLogger("multiraft.raft")


@dataclass(frozen=True, slots=True)
class RaftSettings:
    """The Raft knobs every replica of a store shares."""

    election_tick: int = 10
    heartbeat_tick: int = 2
    tick_interval: float = 0.1
    max_size_per_msg: int = 1 << 20
    max_inflight_msgs: int = 256

    def config(self, peer_id: int, applied: int) -> Config:
        """The RawNode config of a peer (check-quorum, pre-vote, no commit broadcasts)."""
        return Config(
            id=peer_id,
            election_tick=self.election_tick,
            heartbeat_tick=self.heartbeat_tick,
            applied=applied,
            max_size_per_msg=self.max_size_per_msg,
            max_inflight_msgs=self.max_inflight_msgs,
            check_quorum=True,
            pre_vote=True,
            skip_bcast_commit=True,
        )

    @property
    def max_lease(self) -> float:
        return lease_duration(self.election_tick, self.tick_interval)


@dataclass(slots=True)
class ReceivedSnapshot:
    """A snapshot received and staged for a replica, waiting for Raft to accept the MsgSnapshot.

    ``staged`` is consumed by the install (``apply_staged``); a ReceivedSnapshot dropped
    without an install lets the store's ``SnapshotReceiver`` delete the staging.
    """

    index: int
    term: int
    region: Region
    staged: StagedSnapshot


class _RaftLog:
    """The raft core's logger, over :mod:`logging`, prefixed with the region and peer."""

    __slots__ = ("_prefix",)

    def __init__(self, region_id: int, peer_id: int) -> None:
        self._prefix = f"[region {region_id} peer {peer_id}] "

    def debug(self, msg: str) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s%s", self._prefix, msg)

    def info(self, msg: str) -> None:
        log.info("%s%s", self._prefix, msg)

    def warning(self, msg: str) -> None:
        log.warning("%s%s", self._prefix, msg)

    def error(self, msg: str) -> None:
        log.error("%s%s", self._prefix, msg)


def copy_region(r: Region) -> Region:
    """A copy safe to hand out (Region is mutable)."""
    return Region(r.id, r.start_key, r.end_key, r.epoch, list(r.peers))


def _op_keys(req: KvRequest) -> list[bytes]:
    op = req.op
    if isinstance(op, Get | Put | Delete | Cas):
        return [op.key]
    if isinstance(op, BatchPut):
        return [k for k, _ in op.pairs]
    assert isinstance(op, Scan)
    return [op.start_key] if op.start_key else []


class Replica:
    """One region's peer on this store. Built by the store (recovery, bootstrap, peer creation)."""

    def __init__(
        self,
        peer: Peer,
        region: Region,
        storage: RaftStorage,
        settings: RaftSettings,
        *,
        peer_state: PeerState = PeerState.Normal,
    ) -> None:
        self.region_id = region.id
        self.peer = peer
        self.region = region
        self.peer_state = peer_state
        self.storage = storage
        self.settings = settings
        applied = storage.applied_index()
        self.raw_node = RawNode(
            settings.config(peer.id, applied), storage, _RaftLog(region.id, peer.id)
        )
        self.applied_index = applied
        self.applied_term = storage.term(applied) if applied else 0
        self.proposals = ProposalQueue()
        self.pending_writes: list[PendingWrite] = []
        self.pending_reads: list[ReadRequest] = []
        self.read_batches: deque[ReadBatch] = deque()
        self.lease = Lease(settings.max_lease)
        raft = self.raw_node.raft
        self.term = raft.term
        self.leader_id = raft.leader_id
        self.role = raft.state
        self.known_peers: dict[int, Peer] = {p.id: p for p in region.peers}
        self.pending_snapshot: ReceivedSnapshot | None = None
        #: Set when this replica applied its own removal; destroyed in the same round.
        self.destroy_pending = False
        self.destroyed = False
        #: An uninitialized replica a split replaced (its storage lives on in the new one):
        #: destroyed for the loop (never stepped or staged again) but not tombstoned.
        self.replaced_by_split = False
        #: When the last region heartbeat was sent (``trio.current_time()``).
        self.last_heartbeat = -1.0
        #: The last region heartbeat reported peers catching up (heartbeat more often).
        self.reported_pending = False
        #: Approximate data size and key count (grown by apply, reset by the split check).
        self.approx_size = 0
        self.approx_keys = 0
        #: ``approx_size`` when the split checker last scanned the region.
        self.size_checked = 0
        #: Unapplied epoch-changing proposals of this leader (TiKV CmdEpochChecker).
        self.epoch_tracker = EpochChangeTracker()
        #: Index of this leader's last proposed split: lease reads wait until it is applied.
        self.split_index = 0

    # -- state ------------------------------------------------------------------------

    @property
    def initialized(self) -> bool:
        return bool(self.region.peers)

    def is_leader(self) -> bool:
        return self.raw_node.raft.state == StateRole.Leader

    def peer_by_id(self, peer_id: int) -> Peer | None:
        p = self.region.peer_by_id(peer_id)
        return p if p is not None else self.known_peers.get(peer_id)

    def leader_peer(self) -> Peer | None:
        lid = self.raw_node.raft.leader_id
        return self.peer_by_id(lid) if lid else None

    def not_leader(self) -> NotLeader:
        return NotLeader(self.region_id, self.leader_peer())

    def region_copy(self) -> Region:
        return copy_region(self.region)

    def set_region(self, region: Region) -> None:
        """Install an applied region descriptor (conf change, snapshot)."""
        self.region = region
        for p in region.peers:
            self.known_peers[p.id] = p

    def remember_peer(self, p: Peer) -> None:
        if p.id not in self.known_peers:
            self.known_peers[p.id] = p

    # -- requests ---------------------------------------------------------------------

    def check_request(self, req: KvRequest, *, need_leader: bool) -> RequestError | None:
        """The propose/read-time checks, in TiKV's order: initialized, leader, epoch, keys."""
        if not self.initialized or self.peer_state != PeerState.Normal or self.destroyed:
            return RegionNotFound(self.region_id)
        if need_leader and not self.is_leader():
            return self.not_leader()
        if req.epoch.version != self.region.epoch.version:
            return EpochNotMatch([self.region_copy()])
        region = self.region
        for k in _op_keys(req):
            if not region.contains(k):
                return KeyNotInRegion(k, region.id, region.start_key, region.end_key)
        return None

    def envelope(self, m: Message) -> RaftEnvelope | None:
        """Wrap an outgoing message; None if the recipient is unknown."""
        to = self.peer_by_id(m.to)
        if to is None:
            return None
        r = self.region
        return RaftEnvelope(r.id, self.peer, to, r.epoch, m, False, r.start_key, r.end_key)

    # -- reporting --------------------------------------------------------------------

    def summary(self) -> RegionSummary:
        raft = self.raw_node.raft
        return RegionSummary(
            role=region_role(raft.state, is_learner=self.peer.is_learner),
            leader_missing=raft.leader_id == 0,
            is_applying_snapshot=self.peer_state == PeerState.Applying,
            approximate_size_bytes=self.approx_size,
            approximate_keys=self.approx_keys,
        )

    def pending_peers(self) -> list[Peer]:
        """Followers that need a snapshot or have not caught up to the log's start (leader only)."""
        if not self.is_leader():
            return []
        first = self.storage.first_index()
        out = []
        for pid, pr in self.raw_node.raft.prs().iter():
            if pid != self.peer.id and pr.matched < first - 1:
                p = self.peer_by_id(pid)
                if p is not None:
                    out.append(p)
        return out

    def epoch(self) -> RegionEpoch:
        return self.region.epoch

    def __repr__(self) -> str:
        return (
            f"Replica(region={self.region_id}, peer={self.peer.id}, applied={self.applied_index})"
        )
