"""WriteBatch and StorageWriter: one transaction per round, for many regions."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.lowlevel

from multiraft.raft.types import ConfState, Entry, HardState
from multiraft.storage import Engine, RaftStorage, StorageFull, StorageWriter, WriteBatch
from multiraft.storage import keys as K
from multiraft.storage.engine import MIB
from multiraft.storage.recovery import read_region_records
from multiraft.wire.records import decode_entry, decode_region_local_state
from regions.local_state import ApplyState, PeerState, RegionLocalState
from regions.region import Region


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "db", sync=False) as eng:
        yield eng


def ents(lo: int, hi: int, term: int = 1, tag: bytes = b"") -> list[Entry]:
    return [Entry(term=term, index=i, data=tag + b"%d" % i) for i in range(lo, hi + 1)]


def log_of(engine: Engine, rid: int) -> list[tuple[int, int, bytes]]:
    start, end = K.region_log_range(rid)
    out = []
    with engine.read() as txn:
        cur = txn.cursor(engine.dbs.raft_log)
        if cur.set_range(start):
            for k, v in cur.iternext():
                if end is not None and k >= end:
                    break
                e = decode_entry(v)
                assert K.decode_log_key(k) == (rid, e.index)
                out.append((e.index, e.term, e.data))
    return out


def data_of(engine: Engine) -> dict[bytes, bytes]:
    with engine.read() as txn:
        return dict(txn.cursor(engine.dbs.data))


def test_one_batch_writes_many_regions_in_one_transaction(engine: Engine) -> None:
    before = engine.env.info()["last_txnid"]
    batch = WriteBatch()
    for rid in range(1, 301):
        batch.append_entries(rid, ents(1, 3, tag=b"r%d:" % rid), 0)
        batch.put_raft_state(rid, HardState(1, rid, 2), 3)
        batch.put_apply_state(rid, ApplyState(2, 0, 0))
        batch.put_region_state(rid, RegionLocalState(PeerState.Normal, Region(id=rid)))
        batch.put(b"key%05d" % rid, b"value")
    batch.commit(engine)
    assert engine.env.info()["last_txnid"] == before + 1
    assert batch.state == "finished"
    st = batch.statistics()
    assert (st.regions, st.entries, st.data_ops, st.state_records) == (300, 900, 300, 900)
    assert st.commit_seconds > 0
    with engine.read() as txn:
        raft, apply, _ = read_region_records(txn, engine.dbs, 250)
    assert (raft.hard_state, raft.last_index, apply.applied_index) == (HardState(1, 250, 2), 3, 2)
    assert log_of(engine, 7) == [(i, 1, b"r7:%d" % i) for i in (1, 2, 3)]


def test_a_failed_commit_leaves_no_region_partially_written(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "db", map_size=MIB, max_map_size=2 * MIB) as engine:
        first = WriteBatch()
        for rid in range(1, 101):
            first.append_entries(rid, ents(1, 2), 0)
            first.put_raft_state(rid, HardState(1, 0, 0), 2)
        first.commit(engine)
        batch = WriteBatch()
        for rid in range(1, 101):
            # 100 regions x 30 entries x 1 KB: more than the map may hold.
            batch.append_entries(
                rid, [Entry(term=2, index=i, data=b"x" * 1000) for i in range(2, 32)], 2
            )
            batch.put_raft_state(rid, HardState(2, 0, 0), 31)
        with pytest.raises(StorageFull):
            batch.commit(engine)
        assert batch.state == "aborted"
        for rid in (1, 50, 100):
            assert log_of(engine, rid) == [(1, 1, b"1"), (2, 1, b"2")]
            with engine.read() as txn:
                raft, _, _ = read_region_records(txn, engine.dbs, rid)
            assert (raft.hard_state.term, raft.last_index) == (1, 2)


def test_conflicting_tail_is_deleted(engine: Engine) -> None:
    b = WriteBatch()
    b.append_entries(1, ents(1, 10), 0)
    b.commit(engine)
    b = WriteBatch()
    b.append_entries(1, ents(4, 5, term=2), 10)  # overwrite from 4: 6..10 must go
    b.commit(engine)
    assert log_of(engine, 1) == [(i, 1, b"%d" % i) for i in (1, 2, 3)] + [
        (4, 2, b"4"),
        (5, 2, b"5"),
    ]


def test_long_conflicting_tail_uses_a_range_delete(engine: Engine) -> None:
    b = WriteBatch()
    b.append_entries(1, ents(1, 500), 0)
    b.append_entries(2, ents(1, 3), 0)
    b.commit(engine)
    b = WriteBatch()
    b.append_entries(1, ents(2, 2, term=3), 500)
    b.commit(engine)
    assert log_of(engine, 1) == [(1, 1, b"1"), (2, 3, b"2")]
    assert len(log_of(engine, 2)) == 3  # the neighbour is untouched


def test_appends_in_one_batch_merge_in_order(engine: Engine) -> None:
    b = WriteBatch()
    b.append_entries(1, ents(1, 5), 0)
    b.commit(engine)
    b = WriteBatch()
    b.append_entries(1, ents(6, 9), 5)
    b.append_entries(1, ents(8, 8, term=2), 9)  # truncates the staged 8, 9
    b.append_entries(1, ents(3, 4, term=3), 8)  # and now from 3, below what was staged
    b.commit(engine)
    assert log_of(engine, 1) == [(1, 1, b"1"), (2, 1, b"2"), (3, 3, b"3"), (4, 3, b"4")]
    b = WriteBatch()
    b.append_entries(1, ents(5, 5), 4)
    with pytest.raises(ValueError, match="gap"):
        b.append_entries(1, ents(7, 7), 5)


def test_clear_log_then_append(engine: Engine) -> None:
    b = WriteBatch()
    b.append_entries(1, ents(1, 5), 0)
    b.append_entries(2, ents(1, 1), 0)
    b.commit(engine)
    b = WriteBatch()
    b.clear_log(1)
    b.append_entries(1, ents(11, 12, term=4), 10)
    b.commit(engine)
    assert log_of(engine, 1) == [(11, 4, b"11"), (12, 4, b"12")]
    assert log_of(engine, 2) == [(1, 1, b"1")]


def test_delete_raft_meta_with_tombstone(engine: Engine) -> None:
    b = WriteBatch()
    b.append_entries(3, ents(1, 5), 0)
    b.put_raft_state(3, HardState(1, 1, 5), 5)
    b.put_apply_state(3, ApplyState(5, 0, 0))
    b.put_conf_state(3, ConfState(voters=[1]))
    b.commit(engine)
    b = WriteBatch()
    b.delete_raft_meta(3)
    b.put_region_state(3, RegionLocalState(PeerState.Tombstone, Region(id=3)))
    b.commit(engine)
    assert log_of(engine, 3) == []
    with engine.read() as txn:
        assert read_region_records(txn, engine.dbs, 3) == read_region_records(txn, engine.dbs, 999)
        raw = txn.get(K.region_key(3), db=engine.dbs.region_state)
    assert raw is not None and decode_region_local_state(raw).state == PeerState.Tombstone


def test_data_operations_keep_their_order(engine: Engine) -> None:
    b = WriteBatch()
    for k in (b"a", b"b", b"c", b"d", b"zz"):
        b.put(k, b"1")
    b.delete_range(b"b", b"d")  # b, c
    b.put(b"c", b"2")  # after the range delete: survives
    b.delete(b"a")
    b.delete(b"nope")
    b.commit(engine)
    assert data_of(engine) == {b"c": b"2", b"d": b"1", b"zz": b"1"}
    b = WriteBatch()
    b.delete_range(b"d", b"")  # empty end: unbounded
    b.commit(engine)
    assert data_of(engine) == {b"c": b"2"}
    with pytest.raises(ValueError):
        WriteBatch().put(b"", b"x")
    with pytest.raises(ValueError):
        WriteBatch().put(b"k" * 512, b"x")


def test_truncated_index_never_goes_backwards(engine: Engine) -> None:
    b = WriteBatch()
    b.put_apply_state(1, ApplyState(50, 40, 3))
    b.commit(engine)
    b = WriteBatch()
    b.put_apply_state(1, ApplyState(60, 20, 2))  # staged before a compaction to 40 committed
    b.commit(engine)
    with engine.read() as txn:
        _, apply, _ = read_region_records(txn, engine.dbs, 1)
    assert apply == ApplyState(60, 40, 3)


def test_batch_life_cycle(engine: Engine) -> None:
    b = WriteBatch()
    assert b.is_empty()
    b.commit(engine)  # nothing to write: no transaction
    assert b.state == "finished"
    with pytest.raises(RuntimeError):
        b.put(b"k", b"v")
    with pytest.raises(RuntimeError):
        b.finish()
    b.abort()  # a no-op once finished
    assert b.state == "finished"


async def test_storage_writer_commits_off_the_event_loop(engine: Engine) -> None:
    writer = StorageWriter(engine)
    stores = {rid: RaftStorage.open(engine, rid) for rid in range(1, 51)}
    batch = WriteBatch()
    for _rid, st in stores.items():
        st.stage_ready(ents(1, 2000, tag=b"x" * 50), HardState(1, 1, 0), batch)
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await trio.lowlevel.checkpoint()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(ticker)
        await writer.commit(batch)
        done = True
    # The loop kept running while the 100k-entry transaction committed in a thread.
    assert ticks > 1
    assert batch.state == "finished"
    assert all(st.pending_batches() == 0 for st in stores.values())
    stats = writer.statistics()
    assert (stats.commits, stats.entries, stats.failures) == (1, 100_000, 0)
    assert stats.busy_seconds == stats.last_commit_seconds == stats.max_commit_seconds > 0
    assert RaftStorage.open(engine, 7).last_index() == 2000
    await writer.commit(WriteBatch())  # empty: finished without a thread
    assert writer.statistics().commits == 1


async def test_storage_writer_failure_aborts_the_batch(tmp_path: Path) -> None:
    with Engine.open(tmp_path / "db", map_size=MIB, max_map_size=MIB) as engine:
        writer = StorageWriter(engine)
        st = RaftStorage.open(engine, 1)
        batch = WriteBatch()
        st.stage_ready(
            [Entry(term=1, index=i, data=b"x" * 1000) for i in range(1, 5000)],
            HardState(1, 0, 0),
            batch,
        )
        assert st.last_index() == 4999
        with pytest.raises(StorageFull):
            await writer.commit(batch)
        assert batch.state == "aborted"
        # The storage dropped what it staged and matches the disk again.
        assert (st.last_index(), st.pending_batches(), st.hard_state()) == (0, 0, HardState())
        assert writer.statistics().failures == 1
        assert await writer.run(lambda: 42) == 42
