"""Config: the knobs of one Raft node, with raft-rs's defaults and validation rules."""

from __future__ import annotations

from dataclasses import dataclass

from multiraft.raft.errors import ConfigInvalid
from multiraft.raft.types import INVALID_ID, NO_LIMIT, ReadOnlyOption


@dataclass(slots=True)
class Config:
    """Configuration of one Raft node.

    Invariant after ``validate()``: ``id != 0``; ``0 < heartbeat_tick < election_tick``;
    ``election_tick <= min_election_tick() < max_election_tick()``;
    ``max_inflight_msgs > 0``; LeaseBased reads require ``check_quorum``;
    ``max_uncommitted_size >= max_size_per_msg``.
    """

    id: int = INVALID_ID
    #: Ticks a follower waits without hearing from a leader before campaigning.
    election_tick: int = 20
    #: Ticks between leader heartbeats.
    heartbeat_tick: int = 2
    #: The last applied index on restart; entries up to it are not handed out again.
    applied: int = 0
    #: Byte limit per MsgAppend (encoded entry size); 0 sends one entry per message.
    max_size_per_msg: int = 0
    #: The window of in-flight MsgAppends to a peer in Replicate state.
    max_inflight_msgs: int = 256
    #: Leader steps down without a recently active quorum; followers honour a lease.
    check_quorum: bool = False
    #: Run a pre-election round before bumping the term (thesis §9.6).
    pre_vote: bool = False
    #: Lower bound of the randomized election timeout; 0 means ``election_tick``.
    min_election_tick: int = 0
    #: Upper bound (exclusive); 0 means ``2 * election_tick``.
    max_election_tick: int = 0
    read_only_option: ReadOnlyOption = ReadOnlyOption.Safe
    #: Do not send empty appends just to spread a new commit index.
    skip_bcast_commit: bool = False
    #: Merge consecutive MsgAppends to the same peer in one ready.
    batch_append: bool = False
    #: Election priority: a voter with a higher priority refuses equal-log candidates.
    priority: int = 0
    #: Proposals are dropped once this many bytes of entry data are uncommitted.
    max_uncommitted_size: int = NO_LIMIT
    #: Byte budget of ``committed_entries`` per Ready.
    max_committed_size_per_ready: int = NO_LIMIT
    #: How far a leader may apply committed entries it has not persisted itself.
    max_apply_unpersisted_log_limit: int = 0
    #: Followers refuse (ProposalDropped) instead of forwarding proposals.
    disable_proposal_forwarding: bool = False

    def min_election_tick_resolved(self) -> int:
        return self.election_tick if self.min_election_tick == 0 else self.min_election_tick

    def max_election_tick_resolved(self) -> int:
        return 2 * self.election_tick if self.max_election_tick == 0 else self.max_election_tick

    def validate(self) -> None:
        """Raise ConfigInvalid naming the first rule this config breaks."""
        if self.id == INVALID_ID:
            raise ConfigInvalid("invalid node id")
        if self.heartbeat_tick == 0:
            raise ConfigInvalid("heartbeat tick must greater than 0")
        if self.election_tick <= self.heartbeat_tick:
            raise ConfigInvalid("election tick must be greater than heartbeat tick")
        lo, hi = self.min_election_tick_resolved(), self.max_election_tick_resolved()
        if lo < self.election_tick:
            raise ConfigInvalid(
                f"min election tick {lo} must not be less than election_tick {self.election_tick}"
            )
        if lo >= hi:
            raise ConfigInvalid(f"min election tick {lo} should be less than max election tick {hi}")
        if self.max_inflight_msgs == 0:
            raise ConfigInvalid("max inflight messages must be greater than 0")
        if self.read_only_option == ReadOnlyOption.LeaseBased and not self.check_quorum:
            raise ConfigInvalid("read_only_option == LeaseBased requires check_quorum == true")
        if self.max_uncommitted_size < self.max_size_per_msg:
            raise ConfigInvalid("max uncommitted size should greater than max_size_per_msg")
