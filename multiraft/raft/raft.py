"""Raft: the consensus state machine of one node (raft-rs ``Raft``/``RaftCore``).

Theory of operation
-------------------
``Raft`` is a pure, synchronous state machine. Inputs are ``step(message)`` and
``tick()``; outputs accumulate in ``msgs`` (to send) and in ``raft_log`` (entries
to persist, entries committed). It performs no I/O, reads no clock and draws
randomness only from the injected ``rng``. ``RawNode`` wraps it with the
Ready/advance protocol; tests drive it directly, as raft-rs's suite does.

A node is in one of four roles (``StateRole``). ``step`` first reconciles terms
(Raft paper §5.1: a higher term turns anyone into a follower; a lower term is
ignored, with the pre-vote and check-quorum exceptions of thesis §9.6 and §6.2),
then dispatches to ``_step_leader``, ``_step_candidate`` or ``_step_follower``.

Safety rules kept here, each covered by tests:

* A leader commits only entries of its own term by counting replicas (§5.4.2);
  ``RaftLog.maybe_commit`` enforces it.
* A leader counts itself toward a quorum only for entries it has persisted:
  its own ``matched`` moves in ``on_persist_entries``, never in ``append_entry``.
* A voter grants at most one vote per term, and only to a candidate whose log is
  at least as up to date as its own (§5.4.1).
* Membership changes take effect when the application applies them
  (``apply_conf_change``), at most one is pending, and a node with a committed
  but unapplied change does not campaign.

This file is the one large module of the core (the step logic is one
concept); helpers live in ``log.py``, ``tracker/``, ``quorum/``, ``confchange/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from multiraft.raft.confchange import Changer, restore
from multiraft.raft.confchange_codec import (
    ConfChangeDecodeError,
    decode_conf_change,
    decode_conf_change_v2,
)
from multiraft.raft.config import Config
from multiraft.raft.errors import (
    Compacted,
    LogTemporarilyUnavailable,
    ProposalDropped,
    RaftFatal,
    RequestSnapshotDropped,
    SnapshotTemporarilyUnavailable,
    StorageError,
    Unavailable,
)
from multiraft.raft.log import RaftLog
from multiraft.raft.logger import Logger, NullLogger
from multiraft.raft.quorum import VoteResult
from multiraft.raft.read_only import ReadIndexStatus, ReadOnly
from multiraft.raft.rng import Rng, SplitMix64
from multiraft.raft.storage import GetEntriesContext, Storage
from multiraft.raft.tracker import Progress, ProgressState, ProgressTracker
from multiraft.raft.types import (
    CAMPAIGN_ELECTION,
    CAMPAIGN_PRE_ELECTION,
    CAMPAIGN_TRANSFER,
    INVALID_ID,
    INVALID_INDEX,
    NO_LIMIT,
    ConfChangeV2,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadOnlyOption,
    ReadState,
    Snapshot,
    SoftState,
    StateRole,
    conf_state_eq,
    vote_resp_msg_type,
)
from multiraft.raft.util import is_continuous_ents

MT = MessageType
_VOTE_TYPES = frozenset({MT.MsgRequestVote, MT.MsgRequestPreVote})
_TERMED_TYPES = frozenset(
    {
        MT.MsgRequestVote,
        MT.MsgRequestPreVote,
        MT.MsgRequestVoteResponse,
        MT.MsgRequestPreVoteResponse,
    }
)
_UNTERMED_FORWARDS = frozenset({MT.MsgPropose, MT.MsgReadIndex})
_LEADER_MSGS = frozenset({MT.MsgAppend, MT.MsgHeartbeat, MT.MsgSnapshot})


class _UncommittedState:
    """Bytes of entry data a leader has appended but not yet seen committed.

    A soft limit (``max_uncommitted_size``): empty entries and the first
    uncommitted entry are always admitted, so a leader can never wedge itself.
    """

    __slots__ = ("last_log_tail_index", "max_uncommitted_size", "uncommitted_size")

    def __init__(self, max_uncommitted_size: int) -> None:
        self.max_uncommitted_size = max_uncommitted_size
        self.uncommitted_size = 0
        self.last_log_tail_index = 0

    def is_no_limit(self) -> bool:
        return self.max_uncommitted_size == NO_LIMIT

    def maybe_increase(self, ents: Iterable[Entry]) -> bool:
        if self.is_no_limit():
            return True
        size = sum(len(e.data) for e in ents)
        if (
            size == 0
            or self.uncommitted_size == 0
            or size + self.uncommitted_size <= self.max_uncommitted_size
        ):
            self.uncommitted_size += size
            return True
        return False

    def maybe_reduce(self, ents: list[Entry]) -> bool:
        if self.is_no_limit() or not ents:
            return True
        # Entries at or below the tail of the log when this node became leader
        # were never counted, so they must not be subtracted either.
        size = sum(len(e.data) for e in ents if e.index > self.last_log_tail_index)
        if size > self.uncommitted_size:
            self.uncommitted_size = 0
            return False
        self.uncommitted_size -= size
        return True


def _new_message(to: int, msg_type: MessageType, from_: int = INVALID_ID) -> Message:
    return Message(msg_type=msg_type, to=to, from_=from_)


class Raft:
    """One node's Raft state machine. See the module docstring for the rules.

    Public fields mirror raft-rs: ``id, term, vote, state, leader_id,
    lead_transferee, pending_conf_index, pending_request_snapshot, read_states,
    read_only, raft_log, msgs, election_elapsed, check_quorum, pre_vote,
    priority, max_inflight, max_msg_size``.
    """

    def __init__(
        self,
        config: Config,
        store: Storage,
        logger: Logger | None = None,
        rng: Rng | None = None,
    ) -> None:
        config.validate()
        self.logger: Logger = logger if logger is not None else NullLogger()
        self.rng: Rng = rng if rng is not None else SplitMix64(config.id)
        raft_state = store.initial_state()
        conf_state = raft_state.conf_state

        self.id = config.id
        self.term = 0
        self.vote = INVALID_ID
        self.read_states: list[ReadState] = []
        self.raft_log = RaftLog(store, self.logger)
        self.raft_log.max_apply_unpersisted_log_limit = config.max_apply_unpersisted_log_limit
        self.max_inflight = config.max_inflight_msgs
        self.max_msg_size = config.max_size_per_msg
        self.pending_request_snapshot = INVALID_INDEX
        self.state = StateRole.Follower
        self._promotable = False
        self.leader_id = INVALID_ID
        self.lead_transferee: int | None = None
        self.pending_conf_index = 0
        self.read_only = ReadOnly(config.read_only_option)
        self.election_elapsed = 0
        self._heartbeat_elapsed = 0
        self.check_quorum = config.check_quorum
        self.pre_vote = config.pre_vote
        self._skip_bcast_commit = config.skip_bcast_commit
        self._batch_append = config.batch_append
        self._disable_proposal_forwarding = config.disable_proposal_forwarding
        self._heartbeat_timeout = config.heartbeat_tick
        self._election_timeout = config.election_tick
        self._randomized_election_timeout = 0
        self._min_election_timeout = config.min_election_tick_resolved()
        self._max_election_timeout = config.max_election_tick_resolved()
        self.priority = config.priority
        self._uncommitted = _UncommittedState(config.max_uncommitted_size)
        self.max_committed_size_per_ready = config.max_committed_size_per_ready
        self.msgs: list[Message] = []
        self._prs = ProgressTracker(config.max_inflight_msgs)
        #: Test hook: called with every message that passes the term checks
        #: (raft-rs's ``before_step`` failpoint).
        self.before_step: Callable[[Message], None] | None = None

        restore(self._prs, self.raft_log.last_index(), conf_state)
        new_cs = self.post_conf_change()
        if not conf_state_eq(new_cs, conf_state):
            raise RaftFatal(f"invalid restore: {conf_state} != {new_cs}")
        if raft_state.hard_state != HardState():
            self.load_state(raft_state.hard_state)
        if config.applied > 0:
            self._commit_apply_internal(config.applied, skip_check=True)
        self.become_follower(self.term, INVALID_ID)
        self.logger.info(
            f"newRaft id={self.id} term={self.term} commit={self.raft_log.committed} "
            f"applied={self.raft_log.applied} last_index={self.raft_log.last_index()} "
            f"last_term={self.raft_log.last_term()}"
        )

    # ------------------------------------------------------------------
    # Accessors

    def store(self) -> Storage:
        return self.raft_log.store

    def prs(self) -> ProgressTracker:
        return self._prs

    def mut_prs(self) -> ProgressTracker:
        return self._prs

    def snap(self) -> Snapshot | None:
        return self.raft_log.unstable.snapshot

    def pending_read_count(self) -> int:
        return self.read_only.pending_read_count()

    def ready_read_count(self) -> int:
        return len(self.read_states)

    def soft_state(self) -> SoftState:
        return SoftState(self.leader_id, self.state)

    def hard_state(self) -> HardState:
        return HardState(self.term, self.vote, self.raft_log.committed)

    def in_lease(self) -> bool:
        return self.state == StateRole.Leader and self.check_quorum

    def promotable(self) -> bool:
        return self._promotable

    def election_timeout(self) -> int:
        return self._election_timeout

    def heartbeat_timeout(self) -> int:
        return self._heartbeat_timeout

    def heartbeat_elapsed(self) -> int:
        return self._heartbeat_elapsed

    def randomized_election_timeout(self) -> int:
        return self._randomized_election_timeout

    def set_randomized_election_timeout(self, t: int) -> None:
        """Test hook: fix the next election timeout (must lie in [min, max))."""
        if not self._min_election_timeout <= t < self._max_election_timeout:
            raise ValueError(
                f"timeout {t} outside [{self._min_election_timeout}, {self._max_election_timeout})"
            )
        self._randomized_election_timeout = t

    def set_priority(self, priority: int) -> None:
        self.priority = priority

    def skip_bcast_commit(self, skip: bool) -> None:
        self._skip_bcast_commit = skip

    def set_batch_append(self, batch_append: bool) -> None:
        self._batch_append = batch_append

    def set_check_quorum(self, check_quorum: bool) -> None:
        self.check_quorum = check_quorum

    def set_max_committed_size_per_ready(self, size: int) -> None:
        self.max_committed_size_per_ready = size

    def set_max_apply_unpersisted_log_limit(self, limit: int) -> None:
        self.raft_log.max_apply_unpersisted_log_limit = limit

    def has_pending_conf(self) -> bool:
        return self.pending_conf_index > self.raft_log.applied

    def should_bcast_commit(self) -> bool:
        return not self._skip_bcast_commit or self.has_pending_conf()

    def commit_to_current_term(self) -> bool:
        return self._term_is(self.raft_log.committed, self.term)

    def apply_to_current_term(self) -> bool:
        return self._term_is(self.raft_log.applied, self.term)

    def _term_is(self, index: int, term: int) -> bool:
        try:
            return self.raft_log.term(index) == term
        except StorageError:
            return False

    def uncommitted_size(self) -> int:
        return self._uncommitted.uncommitted_size

    def inflight_buffers_size(self) -> int:
        return sum(pr.ins.buffer_capacity() * 8 for _, pr in self._prs.iter())

    # ------------------------------------------------------------------
    # Group commit (optional, TiKV-specific)

    def enable_group_commit(self, enable: bool) -> None:
        self._prs.enable_group_commit(enable)
        if self.state == StateRole.Leader and not enable and self.maybe_commit():
            self.bcast_append()

    def group_commit(self) -> bool:
        return self._prs.group_commit()

    def assign_commit_groups(self, ids: Iterable[tuple[int, int]]) -> None:
        for peer_id, group_id in ids:
            if group_id <= 0:
                raise ValueError("commit group id must be positive")
            pr = self._prs.get(peer_id)
            if pr is not None:
                pr.commit_group_id = group_id
        if self.state == StateRole.Leader and self.group_commit() and self.maybe_commit():
            self.bcast_append()

    def clear_commit_group(self) -> None:
        for _, pr in self._prs.iter():
            pr.commit_group_id = 0

    def check_group_commit_consistent(self) -> bool | None:
        if self.state != StateRole.Leader or not self.apply_to_current_term():
            return None
        index, use_group_commit = self._prs.maximal_committed_index()
        return use_group_commit and index == self.raft_log.committed

    # ------------------------------------------------------------------
    # Sending

    def _send(self, m: Message) -> None:
        """Stamp ``from``/``term`` per raft-rs's rules and queue the message."""
        if m.from_ == INVALID_ID:
            m.from_ = self.id
        t = m.msg_type
        if t in _TERMED_TYPES:
            if m.term == 0:
                raise RaftFatal(f"term should be set when sending {t.name}")
        else:
            if m.term != 0:
                raise RaftFatal(f"term should not be set when sending {t.name} (was {m.term})")
            # Forwarded proposals and reads keep term 0: the receiver treats them
            # as local, whatever term it is at.
            if t not in _UNTERMED_FORWARDS:
                m.term = self.term
        if t in _VOTE_TYPES:
            if self.priority > 0:
                m.deprecated_priority = self.priority
            m.priority = self.priority
        self.msgs.append(m)

    def _prepare_send_snapshot(self, m: Message, pr: Progress, to: int) -> bool:
        if not pr.recent_active:
            self.logger.debug(f"ignore sending snapshot to {to} since it is not recently active")
            return False
        m.msg_type = MT.MsgSnapshot
        try:
            snapshot = self.raft_log.snapshot(pr.pending_request_snapshot, to)
        except SnapshotTemporarilyUnavailable:
            self.logger.debug(f"snapshot to {to} is temporarily unavailable")
            return False
        except StorageError as exc:
            raise RaftFatal(f"unexpected error fetching snapshot: {exc!r}") from exc
        if snapshot.metadata.index == 0:
            raise RaftFatal("need non-empty snapshot")
        m.snapshot = snapshot
        pr.become_snapshot(snapshot.metadata.index)
        self.logger.debug(
            f"sent snapshot index={snapshot.metadata.index} term={snapshot.metadata.term} to {to}"
        )
        return True

    def _prepare_send_entries(self, m: Message, pr: Progress, term: int, ents: list[Entry]) -> None:
        m.msg_type = MT.MsgAppend
        m.index = pr.next_idx - 1
        m.log_term = term
        m.entries = ents
        m.commit = self.raft_log.committed
        if ents:
            pr.update_state(ents[-1].index)

    def _try_batching(self, to: int, pr: Progress, ents: list[Entry]) -> bool:
        """Merge ``ents`` into an already queued MsgAppend to ``to`` if contiguous."""
        for msg in self.msgs:
            if msg.msg_type == MT.MsgAppend and msg.to == to:
                if ents:
                    if not is_continuous_ents(msg, ents):
                        return False
                    msg.entries = msg.entries + ents
                    pr.update_state(msg.entries[-1].index)
                msg.commit = self.raft_log.committed
                return True
        return False

    def send_append(self, to: int) -> None:
        pr = self._prs.get(to)
        if pr is None:
            raise RaftFatal(f"send_append to unknown peer {to}")
        self._maybe_send_append(to, pr, True)

    def _send_append_aggressively(self, to: int, pr: Progress) -> None:
        while self._maybe_send_append(to, pr, False):
            pass

    def _maybe_send_append(self, to: int, pr: Progress, allow_empty: bool) -> bool:
        """Send entries (or a snapshot) to ``to``. Returns whether a message was queued.

        With ``allow_empty`` false nothing is sent unless there are new entries,
        which is how a replicating peer's window is filled aggressively.
        """
        if pr.is_paused():
            return False
        m = Message(to=to)
        if pr.pending_request_snapshot != INVALID_INDEX:
            if not self._prepare_send_snapshot(m, pr, to):
                return False
            self._send(m)
            return True
        ctx = GetEntriesContext.send_append(to, self.term, not allow_empty)
        ents: list[Entry] | None
        ents_err: StorageError | None = None
        try:
            ents = self.raft_log.entries(pr.next_idx, self.max_msg_size, ctx)
        except (Compacted, Unavailable, LogTemporarilyUnavailable) as exc:
            ents, ents_err = None, exc
        if not allow_empty and not ents:
            return False
        term: int | None
        try:
            term = self.raft_log.term(pr.next_idx - 1)
        except (Compacted, Unavailable):
            term = None
        if term is not None and ents is not None:
            if self._batch_append and self._try_batching(to, pr, ents):
                return True
            self._prepare_send_entries(m, pr, term, ents)
        else:
            if isinstance(ents_err, LogTemporarilyUnavailable):
                # Entries are being fetched asynchronously; on_entries_fetched resumes.
                return False
            # The entries (or the term before them) are compacted: send a snapshot.
            if not self._prepare_send_snapshot(m, pr, to):
                return False
        self._send(m)
        return True

    def _send_heartbeat(self, to: int, pr: Progress, ctx: bytes | None) -> None:
        # A follower may not have the leader's full log yet: never tell it to
        # commit past what it is known to hold.
        m = Message(
            msg_type=MT.MsgHeartbeat,
            to=to,
            commit=min(pr.matched, self.raft_log.committed),
        )
        if ctx is not None:
            m.context = ctx
        self._send(m)

    def bcast_append(self) -> None:
        self_id = self.id
        for id, pr in self._prs.iter():
            if id != self_id:
                self._maybe_send_append(id, pr, True)

    def ping(self) -> None:
        if self.state == StateRole.Leader:
            self.bcast_heartbeat()

    def bcast_heartbeat(self) -> None:
        self._bcast_heartbeat_with_ctx(self.read_only.last_pending_request_ctx())

    def _bcast_heartbeat_with_ctx(self, ctx: bytes | None) -> None:
        self_id = self.id
        for id, pr in self._prs.iter():
            if id != self_id:
                self._send_heartbeat(id, pr, ctx)

    def send_timeout_now(self, to: int) -> None:
        self._send(_new_message(to, MT.MsgTimeoutNow))

    def _send_request_snapshot(self) -> None:
        hint = self.raft_log.last_index()
        m = Message(
            msg_type=MT.MsgAppendResponse,
            to=self.leader_id,
            index=self.raft_log.committed,
            reject=True,
            reject_hint=hint,
            request_snapshot=self.pending_request_snapshot,
            log_term=self.raft_log.term(hint),
        )
        self._send(m)

    # ------------------------------------------------------------------
    # Commit and apply

    def maybe_commit(self) -> bool:
        """Advance the commit index to what a quorum holds, if it is of this term (§5.4.2)."""
        mci, _ = self._prs.maximal_committed_index()
        if self.raft_log.maybe_commit(mci, self.term):
            pr = self._prs.get(self.id)
            if pr is not None:
                pr.update_committed(self.raft_log.committed)
            return True
        return False

    def commit_apply(self, applied: int) -> None:
        """The application has applied up to ``applied``."""
        self._commit_apply_internal(applied, skip_check=False)

    def _commit_apply_internal(self, applied: int, skip_check: bool) -> None:
        old_applied = self.raft_log.applied
        if not skip_check:
            self.raft_log.applied_to(applied)
        else:
            if applied <= 0:
                raise RaftFatal("applied must be positive")
            self.raft_log.applied_to_unchecked(applied)
        # Leaving a joint configuration automatically: once the entry that
        # entered it is applied, the leader proposes the empty leave-joint change.
        if (
            self._prs.conf().auto_leave
            and old_applied <= self.pending_conf_index <= applied
            and self.state == StateRole.Leader
        ):
            entry = Entry(entry_type=EntryType.EntryConfChangeV2)
            if not self.append_entry([entry]):
                raise RaftFatal("appending an empty EntryConfChangeV2 should never be dropped")
            self.pending_conf_index = self.raft_log.last_index()
            self.logger.info("initiating automatic transition out of joint configuration")

    def append_entry(self, es: list[Entry]) -> bool:
        """Stamp term and index on ``es`` and append them to the unstable log.

        Returns False (appending nothing) when the uncommitted-size limit refuses them.
        The leader's own Progress is *not* advanced here: that happens only
        once the entries are persisted (``on_persist_entries``).
        """
        if not self._uncommitted.maybe_increase(es):
            return False
        li = self.raft_log.last_index()
        term = self.term
        for i, e in enumerate(es, 1):
            e.term = term
            e.index = li + i
        self.raft_log.append(es)
        return True

    def on_persist_entries(self, index: int, term: int) -> None:
        """Entries up to (index, term) are durable; a leader may now count itself."""
        update = self.raft_log.maybe_persist(index, term)
        if update and self.state == StateRole.Leader:
            if term != self.term:
                self.logger.error(
                    f"leader's persisted index changed but term {term} != {self.term}"
                )
            pr = self._prs.get(self.id)
            if (
                pr is not None
                and pr.maybe_update(index)
                and self.maybe_commit()
                and self.should_bcast_commit()
            ):
                self.bcast_append()

    def on_persist_snap(self, index: int) -> None:
        self.raft_log.maybe_persist_snap(index)

    def reduce_uncommitted_size(self, ents: list[Entry]) -> None:
        if self.state != StateRole.Leader:
            return
        if not self._uncommitted.maybe_reduce(ents):
            self.logger.warning(
                f"try to reduce uncommitted size below 0; first index {ents[0].index}"
            )

    def maybe_increase_uncommitted_size(self, ents: list[Entry]) -> bool:
        return self._uncommitted.maybe_increase(ents)

    # ------------------------------------------------------------------
    # Roles

    def reset(self, term: int) -> None:
        if self.term != term:
            self.term = term
            self.vote = INVALID_ID
        self.leader_id = INVALID_ID
        self.reset_randomized_election_timeout()
        self.election_elapsed = 0
        self._heartbeat_elapsed = 0
        self.abort_leader_transfer()
        self._prs.reset_votes()
        self.pending_conf_index = 0
        self.read_only = ReadOnly(self.read_only.option)
        self.pending_request_snapshot = INVALID_INDEX
        last_index = self.raft_log.last_index()
        committed = self.raft_log.committed
        persisted = self.raft_log.persisted
        self_id = self.id
        for id, pr in self._prs.iter():
            pr.reset(last_index + 1)
            if id == self_id:
                pr.matched = persisted
                pr.committed_index = committed

    def become_follower(self, term: int, leader_id: int) -> None:
        pending_request_snapshot = self.pending_request_snapshot
        self.reset(term)
        self.leader_id = leader_id
        from_role = self.state
        self.state = StateRole.Follower
        # A follower keeps asking for the snapshot it requested from the new leader.
        self.pending_request_snapshot = pending_request_snapshot
        self.raft_log.max_apply_unpersisted_log_limit = 0
        self.logger.info(f"became follower at term {self.term} (from {from_role.name})")

    def become_candidate(self) -> None:
        if self.state == StateRole.Leader:
            raise RaftFatal("invalid transition [leader -> candidate]")
        self.reset(self.term + 1)
        self.vote = self.id
        self.state = StateRole.Candidate
        self.logger.info(f"became candidate at term {self.term}")

    def become_pre_candidate(self) -> None:
        if self.state == StateRole.Leader:
            raise RaftFatal("invalid transition [leader -> pre-candidate]")
        # Pre-candidacy changes neither term nor vote (thesis §9.6): a node that
        # cannot win must not disrupt the cluster.
        self.state = StateRole.PreCandidate
        self._prs.reset_votes()
        self.leader_id = INVALID_ID
        self.logger.info(f"became pre-candidate at term {self.term}")

    def become_leader(self) -> None:
        if self.state == StateRole.Follower:
            raise RaftFatal("invalid transition [follower -> leader]")
        self.reset(self.term)
        self.leader_id = self.id
        self.state = StateRole.Leader
        last_index = self.raft_log.last_index()
        # A candidate persists everything before it can win (its votes were
        # persisted messages), so there is no unpersisted tail to count.
        if last_index != self.raft_log.persisted:
            raise RaftFatal(
                f"become_leader with unpersisted entries: last {last_index} "
                f"persisted {self.raft_log.persisted}"
            )
        self._uncommitted.uncommitted_size = 0
        self._uncommitted.last_log_tail_index = last_index
        pr = self._prs.get(self.id)
        if pr is not None:
            pr.become_replicate()
        # Conservatively treat every uncommitted entry as possibly a conf change.
        self.pending_conf_index = last_index
        if not self.append_entry([Entry()]):
            raise RaftFatal("appending an empty entry should never be dropped")
        self.logger.info(f"became leader at term {self.term}")

    def campaign(self, campaign_type: bytes) -> None:
        """Start a (pre-)election; ``campaign_type`` is one of the CAMPAIGN_* constants."""
        if campaign_type == CAMPAIGN_PRE_ELECTION:
            self.become_pre_candidate()
            vote_msg, term = MT.MsgRequestPreVote, self.term + 1
        else:
            self.become_candidate()
            vote_msg, term = MT.MsgRequestVote, self.term
        self_id = self.id
        if self._poll(self_id, vote_msg, True) == VoteResult.Won:
            return
        commit, commit_term = self.raft_log.commit_info()
        last_index = self.raft_log.last_index()
        last_term = self.raft_log.last_term()
        context = CAMPAIGN_TRANSFER if campaign_type == CAMPAIGN_TRANSFER else b""
        # Only voters (incoming and outgoing) are asked; learners never vote.
        for id in sorted(self._prs.conf().voters.ids()):
            if id == self_id:
                continue
            self._send(
                Message(
                    msg_type=vote_msg,
                    to=id,
                    term=term,
                    index=last_index,
                    log_term=last_term,
                    commit=commit,
                    commit_term=commit_term,
                    context=context,
                )
            )
        self.logger.info(
            f"broadcast {vote_msg.name} term={term} log={last_term}/{last_index}"
        )

    def _poll(self, from_: int, t: MessageType, vote: bool) -> VoteResult:
        self._prs.record_vote(from_, vote)
        granted, rejected, result = self._prs.tally_votes()
        if from_ != self.id:
            self.logger.info(
                f"received {t.name} from {from_} vote={vote} "
                f"approvals={granted} rejections={rejected} term={self.term}"
            )
        if result == VoteResult.Won:
            if self.state == StateRole.PreCandidate:
                self.campaign(CAMPAIGN_ELECTION)
            else:
                self.become_leader()
                self.bcast_append()
        elif result == VoteResult.Lost:
            self.become_follower(self.term, INVALID_ID)
        return result

    def abort_leader_transfer(self) -> None:
        self.lead_transferee = None

    # ------------------------------------------------------------------
    # Ticks

    def tick(self) -> bool:
        """Advance logical time by one tick. Returns whether something may be ready."""
        if self.state == StateRole.Leader:
            return self._tick_heartbeat()
        return self.tick_election()

    def tick_election(self) -> bool:
        self.election_elapsed += 1
        if not self.pass_election_timeout() or not self._promotable:
            return False
        self.election_elapsed = 0
        self.step(_new_message(INVALID_ID, MT.MsgHup, self.id))
        return True

    def _tick_heartbeat(self) -> bool:
        self._heartbeat_elapsed += 1
        self.election_elapsed += 1
        has_ready = False
        if self.election_elapsed >= self._election_timeout:
            self.election_elapsed = 0
            if self.check_quorum:
                has_ready = True
                self.step(_new_message(INVALID_ID, MT.MsgCheckQuorum, self.id))
            if self.state == StateRole.Leader and self.lead_transferee is not None:
                self.abort_leader_transfer()
        if self.state != StateRole.Leader:
            return has_ready
        if self._heartbeat_elapsed >= self._heartbeat_timeout:
            self._heartbeat_elapsed = 0
            has_ready = True
            self.step(_new_message(INVALID_ID, MT.MsgBeat, self.id))
        return has_ready

    def pass_election_timeout(self) -> bool:
        return self.election_elapsed >= self._randomized_election_timeout

    def reset_randomized_election_timeout(self) -> None:
        self._randomized_election_timeout = self.rng.randrange(
            self._min_election_timeout, self._max_election_timeout
        )

    # ------------------------------------------------------------------
    # Step

    def step(self, m: Message) -> None:
        """Feed one message into the state machine.

        Raises:
            ProposalDropped: a proposal this node cannot accept or forward.
        """
        if m.term == 0:
            pass  # local message, or a forwarded proposal/read
        elif m.term > self.term:
            t = m.msg_type
            if t in _VOTE_TYPES:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (
                    self.check_quorum
                    and self.leader_id != INVALID_ID
                    and self.election_elapsed < self._election_timeout
                )
                if not force and in_lease:
                    # Thesis §6.2 (leader stickiness): a follower that heard from a
                    # live leader recently ignores a disruptive candidate entirely.
                    self.logger.info(
                        f"ignored {t.name} from {m.from_} at term {m.term}: lease not expired"
                    )
                    return
            if t == MT.MsgRequestPreVote or (t == MT.MsgRequestPreVoteResponse and not m.reject):
                # A pre-vote never changes terms; a granted pre-vote response
                # carries the future term the pre-candidate will campaign at.
                pass
            else:
                self.logger.info(
                    f"received {t.name} with higher term {m.term} from {m.from_} (term {self.term})"
                )
                if t in _LEADER_MSGS:
                    self.become_follower(m.term, m.from_)
                else:
                    self.become_follower(m.term, INVALID_ID)
        elif m.term < self.term:
            t = m.msg_type
            if (self.check_quorum or self.pre_vote) and t in (MT.MsgHeartbeat, MT.MsgAppend):
                # A leader cut off by a partition may be stuck at a lower term
                # while we (a candidate that could not win) sit at a higher one.
                # Answering lets it step down, and lets us learn the new leader.
                self._send(_new_message(m.from_, MT.MsgAppendResponse))
            elif t == MT.MsgRequestPreVote:
                # Reject explicitly rather than stay silent, or a pre-candidate
                # at a lower term could wait forever.
                self._send(
                    Message(
                        msg_type=MT.MsgRequestPreVoteResponse,
                        to=m.from_,
                        term=self.term,
                        reject=True,
                    )
                )
            else:
                self.logger.debug(
                    f"ignored {t.name} with lower term {m.term} from {m.from_} (term {self.term})"
                )
            return

        if self.before_step is not None:
            self.before_step(m)

        t = m.msg_type
        if t == MT.MsgHup:
            self._hup(False)
        elif t in _VOTE_TYPES:
            self._handle_vote_request(m)
        elif self.state == StateRole.Leader:
            self._step_leader(m)
        elif self.state == StateRole.Follower:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _handle_vote_request(self, m: Message) -> None:
        t = m.msg_type
        # Paper §5.2/§5.4.1: one vote per term, only for an up-to-date log.
        can_vote = (
            self.vote == m.from_
            or (self.vote == INVALID_ID and self.leader_id == INVALID_ID)
            or (t == MT.MsgRequestPreVote and m.term > self.term)
        )
        if (
            can_vote
            and self.raft_log.is_up_to_date(m.index, m.log_term)
            and (m.index > self.raft_log.last_index() or self.priority <= m.get_priority())
        ):
            self.logger.info(f"cast {t.name} for {m.from_} at term {m.term}")
            self._send(
                Message(msg_type=vote_resp_msg_type(t), to=m.from_, term=m.term, reject=False)
            )
            if t == MT.MsgRequestVote:
                self.election_elapsed = 0
                self.vote = m.from_
        else:
            self.logger.info(f"rejected {t.name} from {m.from_} at term {self.term}")
            commit, commit_term = self.raft_log.commit_info()
            self._send(
                Message(
                    msg_type=vote_resp_msg_type(t),
                    to=m.from_,
                    term=self.term,
                    reject=True,
                    commit=commit,
                    commit_term=commit_term,
                )
            )
            self._maybe_commit_by_vote(m)

    def _hup(self, transfer_leader: bool) -> None:
        if self.state == StateRole.Leader:
            self.logger.debug("ignoring MsgHup because already leader")
            return
        if not self._promotable:
            # raft-rs leaves this check to the application; etcd makes it here.
            # A learner (or a removed node) must never campaign.
            self.logger.warning("not promotable (learner or removed); refusing to campaign")
            return
        if (
            self.raft_log.persisted < self.raft_log.last_index()
            and self._prs.vote_result({self.id: True}) == VoteResult.Won
        ):
            # With asynchronous persistence a node may hold appended entries that
            # are not durable yet. A voter whose own vote wins would become leader
            # at once over a log it has not persisted (raft-rs asserts, and
            # crashes, there). With other voters this cannot happen: vote requests
            # leave only after the write. Waiting costs one timeout.
            self.logger.info("log not yet persisted; delaying a campaign this node would win alone")
            return
        first_unstable = self.raft_log.unstable.maybe_first_index()
        low = first_unstable if first_unstable is not None else self.raft_log.applied + 1
        high = self.raft_log.committed + 1
        if self._has_unapplied_conf_changes(low, high, GetEntriesContext.transfer_leader()):
            self.logger.warning(
                f"cannot campaign at term {self.term}: conf changes are committed but not applied"
            )
            return
        self.logger.info(f"starting a new election at term {self.term}")
        if transfer_leader:
            self.campaign(CAMPAIGN_TRANSFER)
        elif self.pre_vote:
            self.campaign(CAMPAIGN_PRE_ELECTION)
        else:
            self.campaign(CAMPAIGN_ELECTION)

    def _has_unapplied_conf_changes(self, lo: int, hi: int, ctx: GetEntriesContext) -> bool:
        if self.raft_log.applied >= self.raft_log.committed:
            return False
        page = self.max_committed_size_per_ready
        while lo < hi:
            try:
                ents = self.raft_log.slice(lo, hi, page, ctx)
            except StorageError as exc:
                raise RaftFatal(f"error scanning unapplied entries [{lo}, {hi}): {exc!r}") from exc
            if not ents:
                break
            for e in ents:
                if e.entry_type != EntryType.EntryNormal:
                    return True
            lo = ents[-1].index + 1
        return False

    def _maybe_commit_by_vote(self, m: Message) -> None:
        """Fast-forward commit from the commit info a vote exchange carries."""
        if m.commit == 0 or m.commit_term == 0:
            return
        last_commit = self.raft_log.committed
        if m.commit <= last_commit or self.state == StateRole.Leader:
            return
        if not self.raft_log.maybe_commit(m.commit, m.commit_term):
            return
        self.logger.info(f"fast-forwarded commit to vote request [{m.commit_term}/{m.commit}]")
        if self.state not in (StateRole.Candidate, StateRole.PreCandidate):
            return
        # A candidate that just learned of a committed conf change must apply it
        # before it may campaign.
        if self._has_unapplied_conf_changes(
            last_commit + 1, self.raft_log.committed + 1, GetEntriesContext.commit_by_vote()
        ):
            self.become_follower(self.term, INVALID_ID)

    # ------------------------------------------------------------------
    # Leader

    def _step_leader(self, m: Message) -> None:
        t = m.msg_type
        if t == MT.MsgBeat:
            self.bcast_heartbeat()
        elif t == MT.MsgCheckQuorum:
            if not self._prs.quorum_recently_active(self.id):
                self.logger.warning("stepped down to follower since quorum is not active")
                self.become_follower(self.term, INVALID_ID)
        elif t == MT.MsgPropose:
            self._handle_propose(m)
        elif t == MT.MsgReadIndex:
            self._leader_read_index(m)
        elif t == MT.MsgAppendResponse:
            self._handle_append_response(m)
        elif t == MT.MsgHeartbeatResponse:
            self._handle_heartbeat_response(m)
        elif t == MT.MsgSnapStatus:
            self._handle_snapshot_status(m)
        elif t == MT.MsgUnreachable:
            self._handle_unreachable(m)
        elif t == MT.MsgTransferLeader:
            self._handle_transfer_leader(m)
        elif self._prs.get(m.from_) is None:
            self.logger.debug(f"no progress available for {m.from_}")

    def _handle_propose(self, m: Message) -> None:
        if not m.entries:
            raise RaftFatal("stepped empty MsgProp")
        if self._prs.get(self.id) is None:
            # Removed from the configuration: it may still lead, but must not
            # grow a log it no longer replicates to a quorum it belongs to.
            raise ProposalDropped()
        if self.lead_transferee is not None:
            self.logger.debug(
                f"transfer leadership to {self.lead_transferee} in progress; dropping proposal"
            )
            raise ProposalDropped()
        last_index = self.raft_log.last_index()
        for i, e in enumerate(m.entries):
            if e.entry_type == EntryType.EntryNormal:
                continue
            try:
                if e.entry_type == EntryType.EntryConfChange:
                    cc: ConfChangeV2 = decode_conf_change(e.data).into_v2()
                else:
                    cc = decode_conf_change_v2(e.data)
            except ConfChangeDecodeError as exc:
                self.logger.error(f"invalid conf change in proposal: {exc}")
                raise ProposalDropped() from exc
            if self.has_pending_conf():
                reason = "possible unapplied conf change"
            else:
                already_joint = bool(self._prs.conf().voters.outgoing.ids())
                want_leave = not cc.changes
                if already_joint and not want_leave:
                    reason = "must transition out of joint config first"
                elif not already_joint and want_leave:
                    reason = "not in joint state; refusing empty conf change"
                else:
                    reason = ""
            if not reason:
                self.pending_conf_index = last_index + i + 1
            else:
                # raft-rs rewrites a refused change into an empty normal entry
                # (the proposal "succeeds"): the application sees it never apply.
                self.logger.info(f"ignoring conf change {cc}: {reason}")
                m.entries[i] = Entry(entry_type=EntryType.EntryNormal)
        if not self.append_entry(m.entries):
            self.logger.debug(
                f"entries dropped: uncommitted size {self.uncommitted_size()} over limit"
            )
            raise ProposalDropped()
        self.bcast_append()

    def _leader_read_index(self, m: Message) -> None:
        # Thesis §6.4: a leader that has not committed an entry of its own term
        # does not know the latest commit index. raft-rs drops; callers retry.
        if not self.commit_to_current_term():
            self.logger.info("leader has not yet committed in its term; dropping read index msg")
            return
        # The shortcut holds only if the single voter is this leader: a leader
        # that removed itself may face a newer leader elected by that voter.
        if self._prs.is_singleton() and self._prs.conf().voters.contains(self.id):
            self._respond_read_index(m, self.raft_log.committed)
            return
        if self.read_only.option == ReadOnlyOption.Safe:
            ctx = m.entries[0].data
            self.read_only.add_request(self.raft_log.committed, m, self.id)
            self._bcast_heartbeat_with_ctx(ctx)
        else:
            self._respond_read_index(m, self.raft_log.committed)

    def _respond_read_index(self, req: Message, index: int) -> None:
        resp = self._handle_ready_read_index(req, index)
        if resp is not None:
            self._send(resp)

    def _handle_ready_read_index(self, req: Message, index: int) -> Message | None:
        if req.from_ == INVALID_ID or req.from_ == self.id:
            self.read_states.append(ReadState(index, req.entries[0].data))
            return None
        return Message(
            msg_type=MT.MsgReadIndexResp, to=req.from_, index=index, entries=req.entries
        )

    def _release_read_index(self, released: list[ReadIndexStatus]) -> None:
        for rs in released:
            self._respond_read_index(rs.req, rs.index)

    def _handle_append_response(self, m: Message) -> None:
        next_probe_index = m.reject_hint
        if m.reject and m.log_term > 0:
            # Fast backtracking: skip every entry the follower cannot match in
            # one round trip (raft-rs / etcd "find_conflict_by_term").
            next_probe_index, _ = self.raft_log.find_conflict_by_term(m.reject_hint, m.log_term)
        pr = self._prs.get(m.from_)
        if pr is None:
            self.logger.debug(f"no progress available for {m.from_}")
            return
        pr.recent_active = True
        pr.update_committed(m.commit)
        if m.reject:
            if pr.maybe_decr_to(m.index, next_probe_index, m.request_snapshot):
                if pr.state == ProgressState.Replicate:
                    pr.become_probe()
                self._maybe_send_append(m.from_, pr, True)
            return

        old_paused = pr.is_paused()
        if not pr.maybe_update(m.index):
            return
        if pr.state == ProgressState.Probe:
            pr.become_replicate()
        elif pr.state == ProgressState.Snapshot:
            if pr.is_snapshot_caught_up():
                pr.become_probe()
        else:
            pr.ins.free_to(m.index)

        if self.maybe_commit():
            if self.should_bcast_commit():
                self.bcast_append()
        elif old_paused:
            self._maybe_send_append(m.from_, pr, True)
        self._send_append_aggressively(m.from_, pr)

        if m.from_ == self.lead_transferee and pr.matched == self.raft_log.last_index():
            self.logger.info(f"sent MsgTimeoutNow to {m.from_} after received MsgAppResp")
            self.send_timeout_now(m.from_)

    def _handle_heartbeat_response(self, m: Message) -> None:
        pr = self._prs.get(m.from_)
        if pr is None:
            self.logger.debug(f"no progress available for {m.from_}")
            return
        pr.update_committed(m.commit)
        pr.recent_active = True
        pr.resume()
        # The response proves the follower is alive: free one slot so a full
        # window cannot stall replication forever after a lost append.
        if pr.state == ProgressState.Replicate and pr.ins.full():
            pr.ins.free_first_one()
        if (
            pr.matched < self.raft_log.last_index()
            or pr.pending_request_snapshot != INVALID_INDEX
        ):
            self._maybe_send_append(m.from_, pr, True)
        if self.read_only.option != ReadOnlyOption.Safe or not m.context:
            return
        acks = self.read_only.recv_ack(m.from_, m.context)
        if acks is None or not self._prs.has_quorum(acks):
            return
        self._release_read_index(self.read_only.advance(m.context))

    def _handle_transfer_leader(self, m: Message) -> None:
        lead_transferee = m.from_
        if self._prs.get(lead_transferee) is None:
            self.logger.debug(f"no progress available for {lead_transferee}")
            return
        if lead_transferee in self._prs.conf().learners:
            self.logger.debug(f"ignored transferring leadership to learner {lead_transferee}")
            return
        last = self.lead_transferee
        if last is not None:
            if last == lead_transferee:
                # Same target: keep the original deadline rather than extend it.
                self.logger.info(f"transfer leadership to {last} already in progress")
                return
            self.abort_leader_transfer()
            self.logger.info(f"abort previous transferring leadership to {last}")
        if lead_transferee == self.id:
            self.logger.debug("already leader; ignored transferring leadership to self")
            return
        self.logger.info(f"starts to transfer leadership to {lead_transferee}")
        # The transfer must finish within one election timeout or is aborted.
        self.election_elapsed = 0
        self.lead_transferee = lead_transferee
        pr = self._prs.get(lead_transferee)
        assert pr is not None
        if pr.matched == self.raft_log.last_index():
            self.send_timeout_now(lead_transferee)
        else:
            self._maybe_send_append(lead_transferee, pr, True)

    def _handle_snapshot_status(self, m: Message) -> None:
        pr = self._prs.get(m.from_)
        if pr is None:
            self.logger.debug(f"no progress available for {m.from_}")
            return
        if pr.state != ProgressState.Snapshot:
            return
        if m.reject:
            pr.snapshot_failure()
        pr.become_probe()
        # Wait for the follower's MsgAppendResponse (or a heartbeat response)
        # before probing again, so a slow snapshot apply is not raced.
        pr.pause()
        pr.pending_request_snapshot = INVALID_INDEX

    def _handle_unreachable(self, m: Message) -> None:
        pr = self._prs.get(m.from_)
        if pr is None:
            self.logger.debug(f"no progress available for {m.from_}")
            return
        # Optimistic sending is pointless to an unreachable peer: probe instead.
        if pr.state == ProgressState.Replicate:
            pr.become_probe()

    # ------------------------------------------------------------------
    # Candidate and follower

    def _step_candidate(self, m: Message) -> None:
        t = m.msg_type
        if t == MT.MsgPropose:
            self.logger.info(f"no leader at term {self.term}; dropping proposal")
            raise ProposalDropped()
        if t == MT.MsgAppend:
            self.become_follower(m.term, m.from_)
            self._handle_append_entries(m)
        elif t == MT.MsgHeartbeat:
            self.become_follower(m.term, m.from_)
            self.handle_heartbeat(m)
        elif t == MT.MsgSnapshot:
            self.become_follower(m.term, m.from_)
            self._handle_snapshot(m)
        elif t in (MT.MsgRequestPreVoteResponse, MT.MsgRequestVoteResponse):
            # Only count responses to the kind of election we are running.
            if (self.state == StateRole.PreCandidate and t != MT.MsgRequestPreVoteResponse) or (
                self.state == StateRole.Candidate and t != MT.MsgRequestVoteResponse
            ):
                return
            self._poll(m.from_, t, not m.reject)
            self._maybe_commit_by_vote(m)
        elif t == MT.MsgTimeoutNow:
            self.logger.debug(f"ignored MsgTimeoutNow from {m.from_} as {self.state.name}")
        elif t == MT.MsgReadIndex:
            self.logger.info(f"no leader at term {self.term}; dropping read index msg")

    def _step_follower(self, m: Message) -> None:
        t = m.msg_type
        if t == MT.MsgPropose:
            if self.leader_id == INVALID_ID:
                self.logger.info(f"no leader at term {self.term}; dropping proposal")
                raise ProposalDropped()
            if self._disable_proposal_forwarding:
                self.logger.info(f"not forwarding to leader {self.leader_id}; dropping proposal")
                raise ProposalDropped()
            m.to = self.leader_id
            self._send(m)
        elif t == MT.MsgAppend:
            self.election_elapsed = 0
            self.leader_id = m.from_
            self._handle_append_entries(m)
        elif t == MT.MsgHeartbeat:
            self.election_elapsed = 0
            self.leader_id = m.from_
            self.handle_heartbeat(m)
        elif t == MT.MsgSnapshot:
            self.election_elapsed = 0
            self.leader_id = m.from_
            self._handle_snapshot(m)
        elif t == MT.MsgTransferLeader:
            if self.leader_id == INVALID_ID:
                self.logger.info(f"no leader at term {self.term}; dropping leader transfer msg")
                return
            m.to = self.leader_id
            self._send(m)
        elif t == MT.MsgTimeoutNow:
            if self._promotable:
                self.logger.info(f"received MsgTimeoutNow from {m.from_}; starting election")
                # The leader asked for this campaign, so it bypasses pre-vote
                # and every follower's lease (CAMPAIGN_TRANSFER).
                self._hup(True)
            else:
                self.logger.info(f"received MsgTimeoutNow from {m.from_} but is not promotable")
        elif t == MT.MsgReadIndex:
            if self.leader_id == INVALID_ID:
                self.logger.info(f"no leader at term {self.term}; dropping read index msg")
                return
            m.to = self.leader_id
            self._send(m)
        elif t == MT.MsgReadIndexResp:
            if len(m.entries) != 1:
                self.logger.error(
                    f"invalid MsgReadIndexResp from {m.from_}: {len(m.entries)} entries"
                )
                return
            self.read_states.append(ReadState(m.index, m.entries[0].data))
            # The read index is committed on the leader; learning it early lets
            # the follower apply and serve the read sooner.
            self.raft_log.maybe_commit(m.index, m.term)

    def handle_append_entries(self, m: Message) -> None:
        self._handle_append_entries(m)

    def _handle_append_entries(self, m: Message) -> None:
        if self.pending_request_snapshot != INVALID_INDEX:
            self._send_request_snapshot()
            return
        committed = self.raft_log.committed
        if m.index < committed:
            # A stale append (reordered or duplicated): everything up to our
            # commit index already matches the leader, so say where we are.
            self._send(
                Message(
                    msg_type=MT.MsgAppendResponse, to=m.from_, index=committed, commit=committed
                )
            )
            return
        resp = Message(msg_type=MT.MsgAppendResponse, to=m.from_)
        result = self.raft_log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if result is not None:
            resp.index = result[1]
        else:
            # Paper §5.3: reject, with a hint that lets the leader skip a whole
            # term of mismatching entries at once.
            hint_index = min(m.index, self.raft_log.last_index())
            hint_index, hint_term = self.raft_log.find_conflict_by_term(hint_index, m.log_term)
            if hint_term is None:
                raise RaftFatal(f"term({hint_index}) must be valid")
            self.logger.debug(
                f"rejected MsgAppend [{m.log_term}/{m.index}] from {m.from_}; "
                f"hint {hint_term}/{hint_index}"
            )
            resp.index = m.index
            resp.reject = True
            resp.reject_hint = hint_index
            resp.log_term = hint_term
        resp.commit = self.raft_log.committed
        self._send(resp)

    def handle_heartbeat(self, m: Message) -> None:
        self.raft_log.commit_to(m.commit)
        if self.pending_request_snapshot != INVALID_INDEX:
            self._send_request_snapshot()
            return
        self._send(
            Message(
                msg_type=MT.MsgHeartbeatResponse,
                to=m.from_,
                context=m.context,
                commit=self.raft_log.committed,
            )
        )

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.get_snapshot()
        sindex, sterm = snap.metadata.index, snap.metadata.term
        if self.restore(snap):
            self.logger.info(f"restored snapshot [{sterm}/{sindex}] commit={self.raft_log.committed}")
            index = self.raft_log.last_index()
        else:
            self.logger.info(f"ignored snapshot [{sterm}/{sindex}] commit={self.raft_log.committed}")
            index = self.raft_log.committed
        self._send(Message(msg_type=MT.MsgAppendResponse, to=m.from_, index=index))

    def restore(self, snap: Snapshot) -> bool:
        """Install a snapshot from the leader. Returns False when it is ignored.

        A snapshot older than the commit index is useless; one whose (index,
        term) the log already holds only fast-forwards the commit index.
        """
        meta = snap.metadata
        if meta.index < self.raft_log.committed:
            return False
        if self.state != StateRole.Follower:
            # Only a leader's snapshot can reach here, and a leader exists at
            # this term only if we are not it: step down to a new term.
            self.logger.warning(f"non-follower ({self.state.name}) attempted to restore snapshot")
            self.become_follower(self.term + 1, INVALID_INDEX)
            return False
        cs = meta.conf_state
        if all(
            id != self.id for id in (*cs.voters, *cs.learners, *cs.voters_outgoing)
        ):
            self.logger.warning(f"attempted to restore snapshot but it is not in the ConfState {cs}")
            return False
        if self.pending_request_snapshot == INVALID_INDEX and self.raft_log.match_term(
            meta.index, meta.term
        ):
            self.logger.info(f"fast-forwarded commit to snapshot [{meta.term}/{meta.index}]")
            self.raft_log.commit_to(meta.index)
            return False

        self.raft_log.restore(snap)
        self._prs.clear()
        try:
            restore(self._prs, self.raft_log.last_index(), cs)
        except Exception as exc:
            raise RaftFatal(f"unable to restore config {cs}: {exc}") from exc
        new_cs = self.post_conf_change()
        if not conf_state_eq(cs, new_cs):
            raise RaftFatal(f"invalid restore: {cs} != {new_cs}")
        pr = self._prs.get(self.id)
        if pr is not None:
            pr.maybe_update(pr.next_idx - 1)
        self.pending_request_snapshot = INVALID_INDEX
        self.logger.info(
            f"restored snapshot commit={self.raft_log.committed} "
            f"last={self.raft_log.last_term()}/{self.raft_log.last_index()}"
        )
        return True

    def request_snapshot(self) -> None:
        """Ask the leader for a snapshot at least as new as our last index (TiKV).

        Raises:
            RequestSnapshotDropped: on a leader, without a leader, or with one pending.
        """
        if self.state == StateRole.Leader:
            self.logger.info("can not request snapshot on leader; dropping request snapshot")
        elif self.leader_id == INVALID_ID:
            self.logger.info("no leader; dropping request snapshot")
        elif self.snap() is not None or self.pending_request_snapshot != INVALID_INDEX:
            self.logger.info("there is a pending snapshot; dropping request snapshot")
        else:
            request_index = self.raft_log.last_index()
            request_index_term = self.raft_log.term(request_index)
            if self.term == request_index_term:
                self.pending_request_snapshot = request_index
                self._send_request_snapshot()
                return
            self.logger.info("mismatched term; dropping request snapshot")
        raise RequestSnapshotDropped()

    # ------------------------------------------------------------------
    # Configuration

    def apply_conf_change(self, cc: ConfChangeV2) -> ConfState:
        """Apply a committed membership change and return the new ConfState.

        Raises:
            ConfChangeError: the change would break a configuration invariant.
        """
        changer = Changer(self._prs)
        if cc.leave_joint():
            cfg, changes = changer.leave_joint()
        else:
            auto_leave = cc.enter_joint()
            if auto_leave is not None:
                cfg, changes = changer.enter_joint(auto_leave, cc.changes)
            else:
                cfg, changes = changer.simple(cc.changes)
        self._prs.apply_conf(cfg, changes, self.raft_log.last_index())
        return self.post_conf_change()

    def post_conf_change(self) -> ConfState:
        """Re-derive everything that depends on the configuration."""
        conf = self._prs.conf()
        cs = conf.to_conf_state()
        is_voter = conf.voters.contains(self.id)
        self._promotable = is_voter
        # A removed or demoted leader keeps leading until the application
        # transfers leadership (raft-rs has no StepDownOnRemoval).
        if not is_voter and self.state == StateRole.Leader:
            return cs
        if self.state != StateRole.Leader or not cs.voters:
            return cs
        # The quorum may have shrunk: entries or reads may now be committed.
        if self.maybe_commit():
            self.bcast_append()
        else:
            self_id = self.id
            for id, pr in self._prs.iter():
                if id != self_id:
                    self._maybe_send_append(id, pr, False)
        ctx = self.read_only.last_pending_request_ctx()
        if ctx is not None:
            acks = self.read_only.recv_ack(self.id, ctx)
            if acks is not None and self._prs.has_quorum(acks):
                self._release_read_index(self.read_only.advance(ctx))
        if self.lead_transferee is not None and not conf.voters.contains(self.lead_transferee):
            self.abort_leader_transfer()
        return cs

    def load_state(self, hs: HardState) -> None:
        if hs.commit < self.raft_log.committed or hs.commit > self.raft_log.last_index():
            raise RaftFatal(
                f"hs.commit {hs.commit} is out of range "
                f"[{self.raft_log.committed}, {self.raft_log.last_index()}]"
            )
        self.raft_log.committed = hs.commit
        self.term = hs.term
        self.vote = hs.vote

    # ------------------------------------------------------------------
    # Flow-control knobs (optional)

    def maybe_free_inflight_buffers(self) -> None:
        for _, pr in self._prs.iter():
            pr.ins.maybe_free_buffer()

    def adjust_max_inflight_msgs(self, target: int, cap: int) -> None:
        pr = self._prs.get(target)
        if pr is not None:
            pr.ins.set_cap(cap)
