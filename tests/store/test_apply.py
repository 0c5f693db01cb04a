"""Apply: epoch and key checks at apply time, Cas through the round's overlay, and exactly-once
apply across a crash (data and applied index commit together)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from multiraft.raft import ConfState, Entry, HardState, SnapshotMetadata
from multiraft.storage import Engine, RaftStorage, WriteBatch, recover
from multiraft.store.apply import ApplyContext, apply_entries
from multiraft.store.proposals import Proposal, Waiter
from multiraft.store.replica import RaftSettings, Replica
from multiraft.wire.command_codec import CmdHeader, RaftCmd, encode_cmd
from multiraft.wire.messages import (
    BatchPut,
    Cas,
    CasResult,
    Delete,
    EpochNotMatch,
    KeyNotInRegion,
    Put,
    StaleCommand,
    WriteOk,
)
from regions import PeerState, RegionLocalState
from regions.region import Peer, Region, RegionEpoch

REGION = Region(1, b"b", b"m", RegionEpoch(1, 3), [Peer(11, 1)])


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "db", sync=False) as eng:
        yield eng


def make_replica(engine: Engine, region: Region = REGION) -> Replica:
    """A replica of ``region`` at its initial state (log and applied at 5/5), as bootstrap makes it."""
    storage = RaftStorage(engine, region.id)
    b = WriteBatch()
    cs = ConfState(voters=[p.id for p in region.peers])
    storage.apply_snapshot_meta(SnapshotMetadata(cs, 5, 5), b)
    b.put_region_state(region.id, RegionLocalState(PeerState.Normal, region))
    b.commit(engine)
    return Replica(region.peers[0], region, storage, RaftSettings())


def cmd(*writes: Put | Delete | Cas | BatchPut, epoch: RegionEpoch = REGION.epoch) -> bytes:
    return encode_cmd(RaftCmd(CmdHeader(1, epoch, 7), list(writes)))


def decoded(data: bytes) -> RaftCmd:
    from multiraft.wire.command_codec import decode_cmd

    return decode_cmd(data)


def entries(*datas: bytes, first: int = 6, term: int = 6) -> list[Entry]:
    return [Entry(term=term, index=i, data=d) for i, d in enumerate(datas, first)]


def run_apply(
    engine: Engine, r: Replica, ents: list[Entry], *, with_log: bool = True
) -> ApplyContext:
    batch = WriteBatch()
    if with_log:
        r.storage.stage_ready(ents, HardState(ents[-1].term, 0, ents[-1].index), batch)
    ctx = ApplyContext(engine, batch)
    apply_entries(r, ents, ctx, now=0.0)
    ctx.close()
    batch.commit(engine)
    return ctx


def propose(r: Replica, index: int, data: bytes, term: int = 6) -> Waiter[object]:
    """Queue the proposal that made entry ``(index, term)`` carrying ``data`` (as the leader
    would have: apply uses the proposal's command instead of decoding the entry)."""
    w: Waiter[object] = Waiter()
    r.proposals.push(Proposal(index, term, decoded(data), w, 0.0))  # type: ignore[arg-type]
    return w


def data(engine: Engine, key: bytes) -> bytes | None:
    with engine.read() as txn:
        return txn.get(key, db=engine.dbs.data)


def answers(ctx: ApplyContext) -> list[object]:
    return [a for _, a in ctx.answers]


def test_writes_and_applied_index_commit_together(engine: Engine) -> None:
    r = make_replica(engine)
    datas = [cmd(Put(b"c", b"1")), cmd(BatchPut([(b"d", b"2"), (b"e", b"3")]))]
    propose(r, 6, datas[0]), propose(r, 7, datas[1])
    ctx = run_apply(engine, r, entries(*datas))
    assert answers(ctx) == [WriteOk(), WriteOk()]
    assert (data(engine, b"c"), data(engine, b"d"), data(engine, b"e")) == (b"1", b"2", b"3")
    assert r.applied_index == 7 and r.applied_term == 6
    assert RaftStorage.open(engine, 1).applied_index() == 7


def test_epoch_mismatch_at_apply_applies_nothing_but_advances(engine: Engine) -> None:
    """A write made for version 3 applied after a split (version 4) fails on every replica."""
    r = make_replica(engine)
    d = cmd(Put(b"c", b"1"), epoch=RegionEpoch(1, 2))
    w = propose(r, 6, d)
    ctx = run_apply(engine, r, entries(d))
    (got,) = answers(ctx)
    assert isinstance(got, EpochNotMatch) and got.current_regions[0].epoch == RegionEpoch(1, 3)
    assert data(engine, b"c") is None
    assert r.applied_index == 6
    assert w.answered is False  # answers are delivered by the loop after the commit


def test_conf_ver_alone_does_not_fail_a_write(engine: Engine) -> None:
    """Normal writes check the version only (multiraft-design §4.1)."""
    r = make_replica(engine)
    d = cmd(Put(b"c", b"1"), epoch=RegionEpoch(9, 3))
    propose(r, 6, d)
    ctx = run_apply(engine, r, entries(d))
    assert answers(ctx) == [WriteOk()]


def test_key_outside_the_region_at_apply(engine: Engine) -> None:
    r = make_replica(engine)
    datas = [cmd(Put(b"z", b"1")), cmd(BatchPut([(b"c", b"1"), (b"a", b"2")]))]
    propose(r, 6, datas[0]), propose(r, 7, datas[1])
    ctx = run_apply(engine, r, entries(*datas))
    first, second = answers(ctx)
    assert first == KeyNotInRegion(b"z", 1, b"b", b"m")
    assert second == KeyNotInRegion(b"a", 1, b"b", b"m")
    # All or nothing: the in-range key of the refused BatchPut was not written either.
    assert data(engine, b"c") is None and data(engine, b"z") is None
    assert r.applied_index == 7


def test_cas_reads_earlier_writes_of_the_same_round(engine: Engine) -> None:
    r = make_replica(engine)
    run_apply(engine, r, entries(cmd(Put(b"c", b"old"))))
    datas = [
        cmd(Cas(b"c", b"old", b"new")),  # sees the committed value
        cmd(Cas(b"c", b"old", b"newer")),  # sees "new" from the overlay: fails
        cmd(Delete(b"c")),
        cmd(Cas(b"c", None, b"again")),  # absent in the overlay (deleted): succeeds
        cmd(Cas(b"c", b"again", None)),  # deletes it
    ]
    for i, d in enumerate(datas, 7):
        propose(r, i, d)
    ctx = run_apply(engine, r, entries(*datas, first=7))
    assert answers(ctx) == [
        CasResult(True, b"old"),
        CasResult(False, b"new"),
        WriteOk(),
        CasResult(True, None),
        CasResult(True, b"again"),
    ]
    assert data(engine, b"c") is None


def test_followers_decode_the_same_results(engine: Engine) -> None:
    """Without proposals (a follower), apply decodes each entry: same data, same index."""
    r = make_replica(engine)
    run_apply(
        engine,
        r,
        entries(cmd(Put(b"c", b"old")), cmd(Cas(b"c", b"old", b"new")), cmd(Put(b"z", b"x"))),
    )
    assert data(engine, b"c") == b"new" and data(engine, b"z") is None
    assert r.applied_index == 8


def test_proposals_passed_over_by_the_log_are_stale(engine: Engine) -> None:
    r = make_replica(engine)
    d = cmd(Put(b"c", b"1"))
    propose(r, 6, cmd(Put(b"c", b"lost")), term=5)  # overwritten: entry 6 has term 6
    propose(r, 7, d, term=6)
    ctx = run_apply(engine, r, entries(b"", d))
    assert answers(ctx) == [StaleCommand(), WriteOk()]
    assert len(r.proposals) == 0


def test_undecodable_entry_is_skipped_deterministically(engine: Engine) -> None:
    r = make_replica(engine)
    d = cmd(Put(b"c", b"1"))
    propose(r, 7, d)
    ctx = run_apply(engine, r, entries(b"\xff garbage", d))
    assert answers(ctx) == [WriteOk()]
    assert data(engine, b"c") == b"1" and r.applied_index == 7


def test_exactly_once_across_a_crash(tmp_path: Path) -> None:
    """Apply 6..8 and commit; stage 9 and 'crash' before its commit. After reopening, the
    applied index and the data agree (8), and Raft hands out nothing at or below 8 again."""
    path = tmp_path / "db"
    engine = Engine.open(path, sync=False)
    r = make_replica(engine)
    run_apply(
        engine, r, entries(cmd(Put(b"c", b"1")), cmd(Put(b"d", b"2")), cmd(Cas(b"c", b"1", b"3")))
    )
    # Entry 9 is staged but the process dies before the round commits.
    batch = WriteBatch()
    ents = entries(cmd(Put(b"c", b"lost")), first=9)
    r.storage.stage_ready(ents, HardState(6, 0, 9), batch)
    ctx = ApplyContext(engine, batch)
    apply_entries(r, ents, ctx, now=0.0)
    ctx.close()
    batch.abort()
    engine.close()

    engine = Engine.open(path, sync=False)
    try:
        (rec,) = recover(engine)
        assert rec.apply_state.applied_index == 8
        assert rec.raft_state.last_index == 8
        assert (data(engine, b"c"), data(engine, b"d")) == (b"3", b"2")
        r2 = Replica(
            REGION.peers[0], rec.region, RaftStorage.from_recovered(engine, rec), RaftSettings()
        )
        assert r2.applied_index == 8 and r2.applied_term == 6
        # A single voter elects itself; its first Readies never re-deliver 6..8.
        r2.raw_node.campaign()
        handed: list[int] = []
        for _ in range(4):
            if not r2.raw_node.has_ready():
                break
            rd = r2.raw_node.ready()
            b = WriteBatch()
            r2.storage.stage_ready(rd.entries, rd.hs, b)
            b.commit(engine)
            handed += [e.index for e in rd.committed_entries]
            light = r2.raw_node.advance(rd)
            handed += [e.index for e in light.committed_entries]
        assert handed and min(handed) == 9
    finally:
        engine.close()
