"""RaftStorage beyond the shared conformance suite: the tail cache, pending batches, compaction,
and a RawNode driven with asynchronous persistence (raft-rs ``advance_append_async``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from multiraft.raft import Config, RawNode
from multiraft.raft.errors import Compacted, RaftFatal, SnapshotTemporarilyUnavailable
from multiraft.raft.storage import GetEntriesContext
from multiraft.raft.types import ConfState, Entry, HardState, SnapshotMetadata
from multiraft.raft.util import limit_size
from multiraft.storage import Engine, RaftStorage, WriteBatch
from multiraft.storage import keys as K
from multiraft.wire.records import RecordCorrupted
from regions.local_state import ApplyState

SYNC = GetEntriesContext.empty(False)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "db", sync=False) as eng:
        yield eng


def ents(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(term=term, index=i, data=b"d%d" % i) for i in range(lo, hi + 1)]


def committed(engine: Engine, st: RaftStorage, entries: list[Entry]) -> None:
    b = WriteBatch()
    st.append(entries, b)
    b.commit(engine)


def test_staged_entries_are_readable_before_commit_and_durable_after(engine: Engine) -> None:
    st = RaftStorage.open(engine, 1)
    batch = WriteBatch()
    st.stage_ready(ents(1, 5), HardState(1, 1, 3), batch)
    # Readable now, through the Storage protocol...
    assert st.entries(1, 6, None, SYNC) == ents(1, 5)
    assert (st.last_index(), st.term(5), st.initial_state().hard_state) == (
        5,
        1,
        HardState(1, 1, 3),
    )
    # ...but not on disk.
    assert RaftStorage.open(engine, 1).last_index() == 0
    assert st.pending_batches() == 1
    batch.commit(engine)
    assert st.pending_batches() == 0
    again = RaftStorage.open(engine, 1)
    assert again.entries(1, 6, None, SYNC) == ents(1, 5)
    assert again.initial_state().hard_state == HardState(1, 1, 3)


def test_tail_term_never_touches_disk(engine: Engine) -> None:
    st = RaftStorage.open(engine, 1)
    committed(engine, st, ents(1, 100))

    def no_disk() -> None:
        raise AssertionError("read the disk")

    engine.begin_read = no_disk  # type: ignore[method-assign, assignment]
    assert [st.term(i) for i in range(1, 101)] == [1] * 100
    assert st.entries(50, 101, None, SYNC) == ents(50, 100)


def test_cache_is_bounded_and_older_entries_come_from_disk(engine: Engine) -> None:
    st = RaftStorage.open(engine, 1, cache_max_entries=64)
    for lo in range(1, 1001, 100):
        committed(engine, st, ents(lo, lo + 99))
    first, last = st.cached_range()
    assert last == 1000 and last - first + 1 <= 64
    # Below the cache: one read transaction, then the cache continues the run.
    got = st.entries(900, 1001, None, SYNC)
    assert got == ents(900, 1000)
    assert st.term(10) == 1


def test_size_limited_reads_across_the_disk_cache_boundary(engine: Engine) -> None:
    st = RaftStorage.open(engine, 1, cache_max_entries=20)
    for lo in range(1, 101, 10):
        committed(engine, st, ents(lo, lo + 9))
    boundary = st.cached_range()[0]
    assert 80 <= boundary <= 90
    everything = ents(1, 100)
    for low in (boundary - 5, boundary - 1, boundary):
        for budget in (0, 30, 60, 100, 1000):
            want = everything[low - 1 :]
            limit_size(want, budget)
            reader = RaftStorage.open(engine, 1, cache_max_entries=20)
            reader.term(100)  # warm the tail: the cache starts near ``boundary`` again
            assert reader.entries(low, 101, budget, SYNC) == want, (low, budget)


def test_bytes_bound(engine: Engine) -> None:
    st = RaftStorage.open(engine, 1, cache_max_bytes=10_000)
    committed(engine, st, [Entry(term=1, index=i, data=b"x" * 1000) for i in range(1, 101)])
    first, last = st.cached_range()
    assert last == 100 and last - first + 1 < 10


def test_entries_not_yet_durable_are_never_evicted(engine: Engine) -> None:
    st = RaftStorage.open(engine, 1, cache_max_entries=10)
    b1 = WriteBatch()
    st.append(ents(1, 500), b1)
    assert st.cached_range() == (1, 500)  # over the bound, but nothing is durable
    b2 = WriteBatch()
    st.append(ents(300, 320, term=2), b2)  # rewrites part of b1 before it commits
    b1.commit(engine)
    assert st.cached_range()[0] <= 300  # b2 still pending from 300
    b2.commit(engine)
    assert st.cached_range() == (311, 320)
    want = ents(1, 299) + ents(300, 320, term=2)
    assert st.entries(1, 321, None, SYNC) == want
    assert RaftStorage.open(engine, 1).entries(1, 321, None, SYNC) == want


def test_a_read_below_the_cache_warms_it(engine: Engine) -> None:
    committed(engine, RaftStorage.open(engine, 1), ents(1, 100))
    st = RaftStorage.open(engine, 1)
    assert st.cached_range() == (101, 100)  # cold after a restart
    assert st.term(100) == 1
    assert st.cached_range() == (69, 100)
    assert st.entries(40, 101, None, SYNC) == ents(40, 100)
    assert st.cached_range() == (40, 100)


def test_missing_log_entry_is_reported_as_corruption(engine: Engine) -> None:
    committed(engine, RaftStorage.open(engine, 1), ents(1, 10))
    engine.write(lambda txn: txn.delete(K.log_key(1, 4), db=engine.dbs.raft_log))
    st = RaftStorage.open(engine, 1, cache_max_entries=0)
    with pytest.raises(RecordCorrupted, match="expected log entry 4"):
        st.entries(2, 8, None, SYNC)
    with pytest.raises(RecordCorrupted):
        st.term(4)


def test_compaction_keeps_the_truncated_term(engine: Engine) -> None:
    st = RaftStorage.open(engine, 1)
    b = WriteBatch()
    st.append(ents(1, 3, term=1) + ents(4, 10, term=2), b)
    st.set_applied_index(8, b)
    b.commit(engine)
    st.compact(5)
    assert (st.first_index(), st.term(4)) == (5, 2)
    with pytest.raises(Compacted):
        st.term(3)
    again = RaftStorage.open(engine, 1)
    assert (again.first_index(), again.term(4), again.apply_state()) == (5, 2, ApplyState(8, 4, 2))
    assert again.entries(5, 11, None, SYNC) == ents(5, 10, term=2)


def test_compaction_refuses_unapplied_or_undurable_entries(engine: Engine) -> None:
    st = RaftStorage.open(engine, 1)
    b = WriteBatch()
    st.append(ents(1, 10), b)
    st.set_applied_index(10, b)
    with pytest.raises(RaftFatal, match="durable"):
        st.compact(5)
    b.commit(engine)
    b = WriteBatch()
    st.set_applied_index(6, b)
    b.commit(engine)
    with pytest.raises(RaftFatal, match="applied"):
        st.compact(9)
    assert st.prepare_compact(1) is None


def test_aborted_batch_reloads_from_disk(engine: Engine) -> None:
    st = RaftStorage.open(engine, 1)
    committed(engine, st, ents(1, 3))
    b = WriteBatch()
    st.stage_ready(ents(4, 6), HardState(2, 2, 3), b)
    st.set_conf_state(ConfState(voters=[9]), b)
    b.abort()
    assert (st.last_index(), st.hard_state(), st.conf_state()) == (3, HardState(), ConfState())
    assert st.pending_batches() == 0


def test_snapshot_without_a_producer_is_temporarily_unavailable(engine: Engine) -> None:
    st = RaftStorage.open(engine, 1)
    with pytest.raises(SnapshotTemporarilyUnavailable):
        st.snapshot(0, 2)


def test_raw_node_with_async_persistence(engine: Engine) -> None:
    """A one-voter group over RaftStorage: Readies are staged, advanced asynchronously,
    and their committed entries appear only once the batch is durable."""
    st = RaftStorage.open(engine, 1)
    b = WriteBatch()
    st.apply_snapshot_meta(SnapshotMetadata(ConfState(voters=[1]), 5, 5), b)
    b.commit(engine)
    node = RawNode(Config(id=1, election_tick=10, heartbeat_tick=1), st)
    node.campaign()
    applied: list[bytes] = []
    for round_no in range(12):
        if round_no == 2:
            node.propose(b"", b"hello")
        if round_no == 4:
            node.propose(b"", b"world")
        batch = WriteBatch()
        numbers = []
        while node.has_ready():
            rd = node.ready()
            applied.extend(e.data for e in rd.committed_entries if e.data)
            st.stage_ready(rd.entries, rd.hs, batch)
            node.advance_append_async(rd)
            numbers.append(rd.number)
        batch.commit(engine)
        if numbers:
            node.on_persist_ready(max(numbers))
        node.advance_apply()
    assert applied == [b"hello", b"world"]
    # After a restart the durable log and hard state bring the node back.
    again = RaftStorage.open(engine, 1)
    state = again.initial_state()
    assert state.conf_state == ConfState(voters=[1])
    assert state.hard_state.commit == again.last_index() == 8
    assert [e.data for e in again.entries(7, 9, None, SYNC)] == [b"hello", b"world"]
