"""Log compaction in its own transactions, and startup recovery from region-state records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from multiraft.raft.storage import GetEntriesContext
from multiraft.raft.types import ConfState, Entry, HardState, SnapshotMetadata
from multiraft.storage import (
    CompactionError,
    CompactTask,
    Engine,
    RaftStorage,
    RecoveryError,
    StorageWriter,
    WriteBatch,
    bootstrap_store,
    compact_log,
    load_store_ident,
    recover,
)
from multiraft.storage import keys as K
from multiraft.storage.engine import Txn
from multiraft.storage.recovery import read_region_records
from regions.local_state import ApplyState, PeerState, RegionLocalState, StoreIdent
from regions.region import Peer, Region

SYNC = GetEntriesContext.empty(False)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "db", sync=False) as eng:
        yield eng


def log_indexes(engine: Engine, rid: int) -> list[int]:
    start, end = K.region_log_range(rid)
    with engine.read() as txn:
        cur = txn.cursor(engine.dbs.raft_log)
        out = []
        if cur.set_range(start):
            for k in cur.iternext(values=False):
                if end is not None and k >= end:
                    break
                out.append(K.decode_log_key(k)[1])
    return out


def region_with_log(engine: Engine, rid: int, last: int, applied: int) -> RaftStorage:
    st = RaftStorage.open(engine, rid)
    b = WriteBatch()
    b.put_region_state(
        rid, RegionLocalState(PeerState.Normal, Region(id=rid, peers=[Peer(rid * 10, 1)]))
    )
    st.stage_ready(
        [Entry(term=1 + i // 100, index=i, data=b"x") for i in range(1, last + 1)],
        HardState(3, 1, applied),
        b,
    )
    st.set_applied_index(applied, b)
    st.set_conf_state(ConfState(voters=[rid * 10]), b)
    b.commit(engine)
    return st


# -- compaction ------------------------------------------------------------


def test_compact_log_in_bounded_transactions(engine: Engine) -> None:
    region_with_log(engine, 1, 1000, 900)
    region_with_log(engine, 2, 10, 10)
    res = compact_log(engine, CompactTask(1, 801), max_deletes_per_txn=300)
    assert (res.truncated_index, res.truncated_term, res.deleted_entries, res.transactions) == (
        800,
        9,
        800,
        3,
    )
    assert log_indexes(engine, 1) == list(range(801, 1001))
    assert log_indexes(engine, 2) == list(range(1, 11))
    with engine.read() as txn:
        _, apply, _ = read_region_records(txn, engine.dbs, 1)
    assert apply == ApplyState(900, 800, 9)


def test_compact_log_refuses_unapplied_entries_and_term_mismatch(engine: Engine) -> None:
    region_with_log(engine, 1, 100, 50)
    with pytest.raises(CompactionError, match="applied"):
        compact_log(engine, CompactTask(1, 60))
    with pytest.raises(CompactionError, match="term"):
        compact_log(engine, CompactTask(1, 40, term=7))
    assert log_indexes(engine, 1) == list(range(1, 101))


def test_compaction_garbage_is_collected_by_the_next_compaction(engine: Engine) -> None:
    region_with_log(engine, 1, 100, 100)
    # A batch recorded truncation at 50 but the entries were never deleted (a crash).
    b = WriteBatch()
    b.put_apply_state(1, ApplyState(100, 50, 1))
    b.commit(engine)
    res = compact_log(engine, CompactTask(1, 71))
    assert res.deleted_entries == 70
    assert log_indexes(engine, 1) == list(range(71, 101))


async def test_compaction_runs_off_the_loop_through_the_writer(engine: Engine) -> None:
    st = region_with_log(engine, 1, 300, 300)
    writer = StorageWriter(engine)
    task = st.prepare_compact(201)
    assert task is not None and st.first_index() == 201  # moved at once in memory
    res = await writer.run(compact_log, engine, task)
    assert res.truncated_index == 200
    # A round's apply state staged with the old truncation cannot undo it.
    stale = WriteBatch()
    stale.put_apply_state(1, ApplyState(300, 0, 0))
    await writer.commit(stale)
    again = RaftStorage.open(engine, 1)
    assert (again.first_index(), again.term(200)) == (201, 3)


# -- recovery ----------------------------------------------------------------


def test_recover_lists_every_region_from_region_state_alone(engine: Engine) -> None:
    for rid in range(1, 201):
        region_with_log(engine, rid, 20 + rid % 7, 15)
    b = WriteBatch()
    b.put_region_state(500, RegionLocalState(PeerState.Tombstone, Region(id=500)))
    b.put_region_state(501, RegionLocalState(PeerState.Normal, Region(id=501)))  # uninitialized
    b.put_raft_state(501, HardState(4, 9, 0), 0)
    b.commit(engine)

    # Damage every log entry: recovery must not read a single one.
    def smash(txn: Txn) -> None:
        for k, _ in list(txn.cursor(engine.dbs.raft_log)):
            txn.put(k, b"\xff", db=engine.dbs.raft_log)

    engine.write(smash)
    recs = recover(engine)
    assert [r.region_id for r in recs] == [*range(1, 201), 500, 501]
    r9 = recs[8]
    assert (r9.hard_state, r9.first_index, r9.last_index, r9.apply_state.applied_index) == (
        HardState(3, 1, 15),
        1,
        20 + 9 % 7,
        15,
    )
    assert r9.initialized and r9.conf_state == ConfState(voters=[90])
    assert recs[-2].tombstone
    assert not recs[-1].initialized and recs[-1].hard_state == HardState(4, 9, 0)
    st = RaftStorage.from_recovered(engine, r9)
    assert (st.first_index(), st.last_index(), st.initial_state().hard_state) == (
        1,
        22,
        HardState(3, 1, 15),
    )


def test_recover_after_snapshot_meta_and_compaction(engine: Engine) -> None:
    st = RaftStorage.open(engine, 3)
    b = WriteBatch()
    b.put_region_state(3, RegionLocalState(PeerState.Normal, Region(id=3, peers=[Peer(31, 1)])))
    st.apply_snapshot_meta(SnapshotMetadata(ConfState(voters=[31]), 5, 5), b)
    st.stage_ready([Entry(term=6, index=i) for i in range(6, 21)], HardState(6, 31, 20), b)
    st.set_applied_index(20, b)
    b.commit(engine)
    st.compact(16)
    (rec,) = recover(engine)
    assert (rec.first_index, rec.last_index, rec.apply_state) == (16, 20, ApplyState(20, 15, 6))
    again = RaftStorage.from_recovered(engine, rec)
    assert again.term(15) == 6 and len(again.entries(16, 21, None, SYNC)) == 5


@pytest.mark.parametrize(
    ("raft_last", "commit", "apply", "match"),
    [
        (10, 11, ApplyState(5, 0, 0), "commit 11 > last index 10"),
        (10, 10, ApplyState(5, 6, 1), "truncated index 6 > applied"),
        (10, 8, ApplyState(9, 0, 0), "applied index 9 > commit"),
    ],
)
def test_recover_refuses_contradictory_records(
    engine: Engine, raft_last: int, commit: int, apply: ApplyState, match: str
) -> None:
    b = WriteBatch()
    b.put_region_state(1, RegionLocalState(PeerState.Normal, Region(id=1)))
    b.put_raft_state(1, HardState(1, 0, commit), raft_last)
    b.put_apply_state(1, apply)
    b.commit(engine)
    with pytest.raises(RecoveryError, match=match):
        recover(engine)


def test_store_ident_is_written_once(engine: Engine) -> None:
    assert load_store_ident(engine) is None
    bootstrap_store(engine, StoreIdent(cluster_id=9, store_id=2))
    bootstrap_store(engine, StoreIdent(cluster_id=9, store_id=2))  # idempotent
    assert load_store_ident(engine) == StoreIdent(9, 2)
    with pytest.raises(RecoveryError, match="already belongs"):
        bootstrap_store(engine, StoreIdent(cluster_id=9, store_id=3))
