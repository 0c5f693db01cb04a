"""Builders for Raft test scenarios (raft-rs's ``test_util``), in one place.

Conventions: a node built by ``new_test_raft`` starts from MemStorage holding
only the voter set (index 0, term 0), so the first leader is at term 1 with its
no-op at index 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from multiraft.raft.config import Config
from multiraft.raft.log import RaftLog
from multiraft.raft.raft import Raft
from multiraft.raft.rng import Rng, SplitMix64
from multiraft.raft.storage import MemStorage
from multiraft.raft.testing.network import BlackHole
from multiraft.raft.types import (
    NO_LIMIT,
    ConfChange,
    ConfChangeSingle,
    ConfChangeType,
    ConfChangeV2,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
    SoftState,
    StateRole,
)

SOME_DATA = b"somedata"
NOP_STEPPER = BlackHole()


def ltoa(raft_log: RaftLog) -> str:
    lines = [f"committed: {raft_log.committed}", f"applied: {raft_log.applied}"]
    lines += [f"#{i}: {e}" for i, e in enumerate(raft_log.all_entries())]
    return "\n".join(lines) + "\n"


def new_storage() -> MemStorage:
    return MemStorage()


def new_test_config(id: int, election_tick: int, heartbeat_tick: int) -> Config:
    return Config(
        id=id,
        election_tick=election_tick,
        heartbeat_tick=heartbeat_tick,
        max_size_per_msg=NO_LIMIT,
        max_inflight_msgs=256,
    )


def _init_storage(storage: MemStorage, peers: Sequence[int], learners: Sequence[int] = ()) -> None:
    initialized = storage.initial_state().initialized()
    if initialized and not peers:
        raise ValueError("new_test_raft with empty peers on initialized store")
    if peers and not initialized:
        storage.initialize_with_conf_state(ConfState(voters=list(peers), learners=list(learners)))


def new_test_raft_with_config(
    config: Config, storage: MemStorage, rng: Rng | None = None
) -> Raft:
    return Raft(config, storage, rng=rng if rng is not None else SplitMix64(config.id))


def new_test_raft(
    id: int,
    peers: Sequence[int],
    election: int,
    heartbeat: int,
    storage: MemStorage | None = None,
) -> Raft:
    storage = storage if storage is not None else MemStorage()
    _init_storage(storage, peers)
    return new_test_raft_with_config(new_test_config(id, election, heartbeat), storage)


def new_test_raft_with_prevote(
    id: int,
    peers: Sequence[int],
    election: int,
    heartbeat: int,
    storage: MemStorage | None = None,
    pre_vote: bool = True,
) -> Raft:
    storage = storage if storage is not None else MemStorage()
    _init_storage(storage, peers)
    config = new_test_config(id, election, heartbeat)
    config.pre_vote = pre_vote
    return new_test_raft_with_config(config, storage)


def new_test_raft_with_logs(
    id: int,
    peers: Sequence[int],
    election: int,
    heartbeat: int,
    storage: MemStorage,
    logs: Sequence[Entry],
) -> Raft:
    _init_storage(storage, peers)
    storage.append(list(logs))
    return new_test_raft_with_config(new_test_config(id, election, heartbeat), storage)


def new_test_learner_raft(
    id: int,
    peers: Sequence[int],
    learners: Sequence[int],
    election: int,
    heartbeat: int,
    storage: MemStorage | None = None,
    pre_vote: bool = False,
) -> Raft:
    storage = storage if storage is not None else MemStorage()
    _init_storage(storage, peers, learners)
    config = new_test_config(id, election, heartbeat)
    config.pre_vote = pre_vote
    return new_test_raft_with_config(config, storage)


def hard_state(term: int, commit: int, vote: int) -> HardState:
    """Note raft-rs's argument order: (term, commit, vote)."""
    return HardState(term=term, vote=vote, commit=commit)


def soft_state(leader_id: int, raft_state: StateRole) -> SoftState:
    return SoftState(leader_id, raft_state)


def new_message_with_entries(
    from_: int, to: int, t: MessageType, ents: Sequence[Entry]
) -> Message:
    return Message(msg_type=t, to=to, from_=from_, entries=list(ents))


def new_message(from_: int, to: int, t: MessageType, n: int = 0) -> Message:
    """A message carrying ``n`` entries of ``SOME_DATA``."""
    return new_message_with_entries(from_, to, t, [new_entry(0, 0, SOME_DATA) for _ in range(n)])


def new_entry(term: int, index: int, data: bytes | None = None) -> Entry:
    return Entry(term=term, index=index, data=data or b"")


def empty_entry(term: int, index: int) -> Entry:
    return Entry(term=term, index=index)


def new_snapshot(index: int, term: int, voters: Sequence[int]) -> Snapshot:
    return Snapshot(
        metadata=SnapshotMetadata(conf_state=ConfState(voters=list(voters)), index=index, term=term)
    )


def conf_change(t: ConfChangeType, node_id: int) -> ConfChange:
    return ConfChange(change_type=t, node_id=node_id)


def remove_node(node_id: int) -> ConfChangeV2:
    return conf_change(ConfChangeType.RemoveNode, node_id).into_v2()


def add_node(node_id: int) -> ConfChangeV2:
    return conf_change(ConfChangeType.AddNode, node_id).into_v2()


def add_learner(node_id: int) -> ConfChangeV2:
    return conf_change(ConfChangeType.AddLearnerNode, node_id).into_v2()


def conf_state(voters: Sequence[int], learners: Sequence[int]) -> ConfState:
    return ConfState(voters=list(voters), learners=list(learners))


def conf_state_v2(
    voters: Sequence[int],
    learners: Sequence[int],
    voters_outgoing: Sequence[int],
    learners_next: Sequence[int],
    auto_leave: bool,
) -> ConfState:
    return ConfState(
        voters=list(voters),
        learners=list(learners),
        voters_outgoing=list(voters_outgoing),
        learners_next=list(learners_next),
        auto_leave=auto_leave,
    )


def conf_change_v2(steps: Sequence[ConfChangeSingle]) -> ConfChangeV2:
    return ConfChangeV2(changes=list(steps))
