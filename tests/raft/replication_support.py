"""Helpers shared by the progress and replication tests."""

from __future__ import annotations

from multiraft.raft.raft import Raft
from multiraft.raft.storage import MemStorage
from multiraft.raft.testing import (
    new_message,
    read_messages,
)
from multiraft.raft.tracker import Progress
from multiraft.raft.types import (
    ConfState,
    Entry,
    Message,
    MessageType,
    StateRole,
)

MT = MessageType


# ----------------------------------------------------------------------------
# Local helpers


def _pr(r: Raft, id: int) -> Progress:
    pr = r.prs().get(id)
    assert pr is not None, f"no progress for {id}"
    return pr


def _store(voters: list[int]) -> MemStorage:
    return MemStorage.new_with_conf_state(ConfState(voters=voters))


def _assert_raft_log(r: Raft, committed: int, applied: int, last: int) -> None:
    log = r.raft_log
    assert (log.committed, log.applied, log.last_index()) == (committed, applied, last)


def _committed_indexes(r: Raft, ids: tuple[int, ...] = (1, 2, 3)) -> tuple[int, ...]:
    return tuple(_pr(r, i).committed_index for i in ids)


def _next_ents(r: Raft, s: MemStorage) -> list[Entry]:
    """Persist the unstable entries, return the next committed entries, and apply them."""
    unstable = list(r.raft_log.unstable_entries())
    if unstable:
        last = unstable[-1]
        r.raft_log.stable_entries(last.index, last.term)
        s.append(unstable)
        r.on_persist_entries(last.index, last.term)
    ents = r.raft_log.next_entries()
    r.commit_apply(r.raft_log.committed)
    return list(ents or [])


def _accept_and_reply(m: Message) -> Message:
    assert m.msg_type == MT.MsgAppend
    reply = new_message(m.to, m.from_, MT.MsgAppendResponse)
    reply.term = m.term
    reply.index = m.index + len(m.entries)
    return reply


def _commit_noop_entry(r: Raft, s: MemStorage) -> None:
    """Ack the new leader's no-op from every follower, persist it and apply it."""
    assert r.state == StateRole.Leader
    r.bcast_append()
    for m in read_messages(r):
        assert m.msg_type == MT.MsgAppend
        assert len(m.entries) == 1
        assert m.entries[0].data == b""
        r.step(_accept_and_reply(m))
    read_messages(r)
    unstable = list(r.raft_log.unstable_entries())
    if unstable:
        last = unstable[-1]
        r.raft_log.stable_entries(last.index, last.term)
        s.append(unstable)
        r.on_persist_entries(last.index, last.term)
        r.commit_apply(r.raft_log.committed)


def _expect_one_message(r: Raft) -> Message:
    msgs = read_messages(r)
    assert len(msgs) == 1, msgs
    return msgs[0]
