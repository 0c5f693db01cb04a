"""Log GC: TiKV's compaction decision on leaders, CompactLog applied with the round's batch on
every replica, the bounded deletion of compacted entries afterwards, and the whole path through
a three-store cluster, including a follower left behind and caught up by snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from multiraft.metrics import RaftMetrics
from multiraft.raft import ConfState, Entry, HardState, SnapshotMetadata
from multiraft.raft.errors import Compacted
from multiraft.raft.storage import GetEntriesContext
from multiraft.storage import Engine, RaftStorage, StorageWriter, WriteBatch
from multiraft.storage import keys as K
from multiraft.storage.compaction import purge_log
from multiraft.store import Store
from multiraft.store.admin_propose import propose_admin
from multiraft.store.apply import ApplyContext, apply_entries
from multiraft.store.log_gc import (
    LogGc,
    LogGcConfig,
    apply_compact_log,
    compact_decision,
    measure_log_bytes,
)
from multiraft.store.replica import RaftSettings, Replica
from multiraft.store.router import Router
from multiraft.wire.command_codec import CmdHeader, CompactLog, RaftCmd, encode_cmd
from multiraft.wire.messages import Get, GetResult, Internal, Put, ReadMode, Timeout, WriteOk
from multiraft.wire.records import decode_apply_state
from regions import PeerState, RegionLocalState
from regions.region import Peer, Region, RegionEpoch
from tests.store.harness import Cluster, wait_until

CFG = LogGcConfig(threshold=50, count_limit=768, size_limit_bytes=10_000, reserve_max_ticks=6)
SYNC = GetEntriesContext.empty(False)


def term_of(index: int) -> int:
    return 6 + index // 100


# -- compact_decision ----------------------------------------------------------------------


@dataclass
class FakeProgress:
    matched: int


@dataclass
class FakeTracker:
    matched: list[int]

    def iter(self) -> list[tuple[int, FakeProgress]]:
        return [(i + 1, FakeProgress(m)) for i, m in enumerate(self.matched)]


@dataclass
class FakeRaft:
    tracker: FakeTracker

    def prs(self) -> FakeTracker:
        return self.tracker


@dataclass
class FakeNode:
    raft: FakeRaft


@dataclass
class FakeStorage:
    first: int
    last: int

    def first_index(self) -> int:
        return self.first

    def last_index(self) -> int:
        return self.last

    def term(self, index: int) -> int:
        assert self.first - 1 <= index <= self.last, index
        return term_of(index)


@dataclass
class FakeReplica:
    storage: FakeStorage
    applied_index: int
    raw_node: FakeNode
    leader: bool = True
    initialized: bool = True
    destroyed: bool = False
    region_id: int = 1
    extra: dict[str, object] = field(default_factory=dict)

    def is_leader(self) -> bool:
        return self.leader


def replica(first: int, last: int, matched: list[int], applied: int | None = None) -> FakeReplica:
    node = FakeNode(FakeRaft(FakeTracker(matched)))
    return FakeReplica(FakeStorage(first, last), last if applied is None else applied, node)


def decide(r: FakeReplica, **kw: int) -> CompactLog | None:
    return compact_decision(r, CFG, **kw)  # type: ignore[arg-type]


def test_compacts_what_every_peer_has_past_the_threshold() -> None:
    # Keep entry ``replicated``: truncated index = replicated - 1, its term from the log.
    assert decide(replica(6, 100, [100, 100, 90])) == CompactLog(89, term_of(89))
    assert decide(replica(6, 100, [100, 100, 55])) is None  # 55 - 6 < 50


def test_below_the_threshold_compacts_after_the_reserve_ticks() -> None:
    r = replica(6, 40, [40, 40, 40])
    assert decide(r, skipped_ticks=5) is None
    assert decide(r, skipped_ticks=6) == CompactLog(39, term_of(39))


def test_a_lagging_follower_pins_the_log_until_the_limits() -> None:
    behind = replica(6, 700, [700, 700, 10])
    assert decide(behind) is None  # replicated 10: only 4 entries past first
    # Over the count limit: half the log goes, past the follower (it will need a snapshot).
    over = replica(6, 1000, [1000, 1000, 10])
    assert decide(over) == CompactLog(6 + 994 // 2 - 1, term_of(502))
    # Over the size limit, whatever the count.
    assert decide(behind, log_bytes=10_000) == CompactLog(6 + 694 // 2 - 1, term_of(352))
    # A peer with nothing (added, waiting for its snapshot) pins it the same way.
    assert decide(replica(6, 700, [700, 700, 0])) is None


def test_never_past_the_applied_index() -> None:
    r = replica(6, 1000, [1000, 1000, 1000], applied=900)
    assert decide(r) == CompactLog(900, term_of(900))
    assert decide(replica(6, 100, [100, 100, 100], applied=30)) == CompactLog(30, term_of(30))
    # Applied at the first index: nothing to compact.
    assert decide(replica(6, 1000, [1000, 1000, 1000], applied=5)) is None


def test_nothing_for_followers_short_logs_or_gone_replicas() -> None:
    r = replica(6, 100, [100, 100, 100])
    r.leader = False
    assert decide(r) is None
    r = replica(6, 100, [100, 100, 100])
    r.destroyed = True
    assert decide(r) is None
    assert decide(replica(6, 8, [8, 8, 8]), skipped_ticks=99) is None  # fewer than 3 entries


def test_config_defaults_follow_tikv_formulas() -> None:
    local = LogGcConfig.local()
    assert (local.count_limit, local.size_limit_bytes) == (768, 768 * 1024)
    big = LogGcConfig.from_split_size(96 << 20)
    assert (big.count_limit, big.size_limit_bytes) == (73728, 72 << 20)
    with pytest.raises(ValueError, match="threshold"):
        LogGcConfig(threshold=0)


# -- apply_compact_log and purge_log (real storage) ------------------------------------------

REGION = Region(1, b"", b"", RegionEpoch(1, 1), [Peer(11, 1)])


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "db", sync=False) as eng:
        yield eng


def logged_replica(engine: Engine, last: int, *, applied: int | None = None) -> Replica:
    """A one-voter replica whose log holds entries 6..last (durable), applied to ``applied``."""
    storage = RaftStorage(engine, REGION.id)
    b = WriteBatch()
    storage.apply_snapshot_meta(SnapshotMetadata(ConfState(voters=[11]), 5, 5), b)
    b.put_region_state(REGION.id, RegionLocalState(PeerState.Normal, REGION))
    b.commit(engine)
    b = WriteBatch()
    ents = [Entry(term=term_of(i), index=i, data=b"") for i in range(6, last + 1)]
    storage.stage_ready(ents, HardState(term_of(last), 11, last), b)
    storage.set_applied_index(last if applied is None else applied, b)
    b.commit(engine)
    return Replica(REGION.peers[0], REGION, storage, RaftSettings())


def on_disk(engine: Engine) -> list[int]:
    start, end = K.region_log_range(1)
    with engine.read() as txn:
        cur = txn.cursor(engine.dbs.raft_log)
        out = []
        if cur.set_range(start):
            for k in cur.iternext(values=False):
                if end is not None and k >= end:
                    break
                out.append(K.decode_log_key(k)[1])
        return out


def truncated_on_disk(engine: Engine) -> tuple[int, int]:
    with engine.read() as txn:
        raw = txn.get(K.region_key(1), db=engine.dbs.apply_state)
    assert raw is not None
    st = decode_apply_state(raw)
    return st.truncated_index, st.truncated_term


def test_apply_moves_the_first_index_and_commits_the_truncation_with_the_batch(
    engine: Engine,
) -> None:
    r = logged_replica(engine, 150)
    batch = WriteBatch()
    ctx = ApplyContext(engine, batch)
    assert apply_compact_log(r, CompactLog(120, term_of(120)), ctx) == WriteOk()
    # In memory at once: readers never ask for what the purge will delete.
    assert r.storage.first_index() == 121 and r.storage.term(120) == term_of(120)
    with pytest.raises(Compacted):
        r.storage.entries(120, 122, None, SYNC)
    assert ctx.compactions == [(r, 120)]
    assert truncated_on_disk(engine) == (5, 5)  # ... and on disk with the batch, not before
    batch.commit(engine)
    assert truncated_on_disk(engine) == (120, term_of(120))
    assert on_disk(engine) == list(range(6, 151))  # deletion is the purge's job
    # A restart sees the new first index.
    assert RaftStorage.open(engine, 1).first_index() == 121


def test_a_failed_batch_leaves_the_log_as_it_was(engine: Engine) -> None:
    r = logged_replica(engine, 150)
    batch = WriteBatch()
    apply_compact_log(r, CompactLog(120, term_of(120)), ApplyContext(engine, batch))
    batch.abort()  # the commit failed: the storage reloads from disk
    assert r.storage.first_index() == 6


def test_stale_future_and_mismatched_commands(engine: Engine) -> None:
    r = logged_replica(engine, 150, applied=140)
    batch = WriteBatch()
    ctx = ApplyContext(engine, batch)
    assert apply_compact_log(r, CompactLog(100, term_of(100)), ctx) == WriteOk()
    # At or below the truncated index: a no-op (a snapshot or an earlier command got there).
    assert apply_compact_log(r, CompactLog(100, term_of(100)), ctx) == WriteOk()
    assert apply_compact_log(r, CompactLog(60, term_of(60)), ctx) == WriteOk()
    assert ctx.compactions == [(r, 100)]
    past = apply_compact_log(r, CompactLog(141, term_of(141)), ctx)
    assert isinstance(past, Internal) and "applied" in past.message
    wrong = apply_compact_log(r, CompactLog(130, term_of(130) + 1), ctx)
    assert isinstance(wrong, Internal) and "term" in wrong.message
    assert r.storage.first_index() == 101 and len(ctx.compactions) == 1


def test_applied_through_apply_entries_in_the_same_round_as_the_entries_it_covers(
    engine: Engine,
) -> None:
    """The apply state RaftStorage had staged is behind the entries applied this round: the
    compaction still applies, and the truncation commits with them."""
    r = logged_replica(engine, 150, applied=5)
    r.applied_index = 5
    cmd = RaftCmd(CmdHeader(1, RegionEpoch(9, 9)), admin=CompactLog(100, term_of(100)))
    batch = WriteBatch()
    ctx = ApplyContext(engine, batch)
    ents = [Entry(term=term_of(i), index=i, data=b"") for i in range(6, 150)]
    ents.append(Entry(term=term_of(150), index=150, data=encode_cmd(cmd)))
    apply_entries(r, ents, ctx, now=0.0)  # CompactLog checks no epoch (§4.1)
    ctx.close()
    batch.commit(engine)
    assert ctx.compactions == [(r, 100)] and r.applied_index == 150
    assert truncated_on_disk(engine) == (100, term_of(100))
    assert RaftStorage.open(engine, 1).apply_state().applied_index == 150


def test_purge_deletes_in_bounded_steps_and_never_past_the_truncation(engine: Engine) -> None:
    r = logged_replica(engine, 150)
    batch = WriteBatch()
    apply_compact_log(r, CompactLog(20, term_of(20)), ApplyContext(engine, batch))
    batch.commit(engine)
    # Asked for more than was truncated: only what is below the truncated index goes.
    assert purge_log(engine, 1, 140, 4) == 4
    assert on_disk(engine)[0] == 10
    assert purge_log(engine, 1, 140, 100) == 11
    assert on_disk(engine) == list(range(21, 151))
    assert purge_log(engine, 1, 140, 100) == 0
    assert purge_log(engine, 99, 140, 100) == 0  # no such region (destroyed): nothing


def test_measure_log_bytes(engine: Engine) -> None:
    logged_replica(engine, 30)
    got = measure_log_bytes(engine, [(1, 6, 30), (2, 1, 10)], max_entries=1000)
    assert got[1][0] == 30 and got[1][1] > 25 * 20  # headers: > 20 bytes each
    assert got[2] == (0, 0)  # no log: nothing measured
    partial_ = measure_log_bytes(engine, [(1, 6, 30)], max_entries=10)
    assert partial_[1][0] == 15


# -- LogGc -----------------------------------------------------------------------------------


class Proposals:
    def __init__(self, answer: object = None) -> None:
        self.cmds: list[RaftCmd] = []
        self.answer = answer if answer is not None else WriteOk()

    async def __call__(self, cmd: RaftCmd) -> object:
        self.cmds.append(cmd)
        return self.answer


def leader_router(engine: Engine, last: int) -> tuple[Router, Replica]:
    r = logged_replica(engine, last)
    r.raw_node.campaign()  # one voter: leader at once, matched = last
    assert r.is_leader()
    router = Router()
    router.add(r)
    return router, r


async def test_tick_proposes_for_leaders_with_the_region_epoch(engine: Engine) -> None:
    router, r = leader_router(engine, 100)
    props = Proposals()
    metrics = RaftMetrics(CollectorRegistry())
    gc = LogGc(router, engine, StorageWriter(engine), props, CFG, metrics=metrics)
    async with trio.open_nursery() as nursery:
        assert await gc.tick(nursery) == 1
    (cmd,) = props.cmds
    assert cmd.header.region_id == 1 and cmd.header.epoch == REGION.epoch
    assert cmd.admin == CompactLog(99, term_of(99))
    assert metrics.log_compact_proposals.labels("ok")._value.get() == 1
    assert gc.inflight == set()
    # A follower proposes nothing.
    r.raw_node.raft.become_follower(r.raw_node.raft.term + 1, 0)
    async with trio.open_nursery() as nursery:
        assert await gc.tick(nursery) == 0


async def test_failed_proposals_are_counted_and_retried_next_tick(engine: Engine) -> None:
    router, _ = leader_router(engine, 100)
    props = Proposals(Timeout())
    metrics = RaftMetrics(CollectorRegistry())
    gc = LogGc(router, engine, StorageWriter(engine), props, CFG, metrics=metrics)
    for _ in range(2):
        async with trio.open_nursery() as nursery:
            await gc.tick(nursery)
    assert len(props.cmds) == 2
    assert metrics.log_compact_proposals.labels("timeout")._value.get() == 2
    assert gc.statistics().proposal_failures == 2


async def test_size_limit_forces_a_compaction_past_a_lagging_peer(engine: Engine) -> None:
    router, r = leader_router(engine, 100)
    r.raw_node.raft.prs().iter()  # one voter; pretend a learner lags far behind:
    for _, pr in r.raw_node.raft.prs().iter():
        pr.matched = 8
    props = Proposals()
    roomy = LogGc(router, engine, StorageWriter(engine), props, CFG)
    async with trio.open_nursery() as nursery:
        assert await roomy.tick(nursery) == 0  # 95 entries are under every limit
    tight = LogGcConfig(threshold=50, count_limit=768, size_limit_bytes=500)
    gc = LogGc(router, engine, StorageWriter(engine), props, tight)
    async with trio.open_nursery() as nursery:
        assert await gc.tick(nursery) == 1
    assert props.cmds[0].admin == CompactLog(6 + (101 - 6) // 2 - 1, term_of(52))


async def test_on_compactions_purges_in_the_background(engine: Engine) -> None:
    r = logged_replica(engine, 150)
    batch = WriteBatch()
    ctx = ApplyContext(engine, batch)
    apply_compact_log(r, CompactLog(50, term_of(50)), ctx)
    apply_compact_log(r, CompactLog(80, term_of(80)), ctx)
    batch.commit(engine)
    metrics = RaftMetrics(CollectorRegistry())
    gc = LogGc(Router(), engine, StorageWriter(engine), Proposals(),
               LogGcConfig(purge_batch=7), metrics=metrics)  # fmt: skip
    async with trio.open_nursery() as nursery:
        await nursery.start(gc.run)
        gc.on_compactions(ctx.compactions)
        assert gc.statistics().pending_purges == 1  # the two coalesce
        with trio.fail_after(10):
            while on_disk(engine)[0] != 81:  # noqa: ASYNC110
                await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert on_disk(engine) == list(range(81, 151))
    assert metrics.log_gc_deleted_entries._value.get() == 75
    assert metrics.log_compactions._value.get() == 2


# -- through a cluster -----------------------------------------------------------------------


def start_gc(c: Cluster, nursery: trio.Nursery, cfg: LogGcConfig) -> dict[int, LogGc]:
    gcs = {}
    for sid, s in c.net.stores.items():
        gc = LogGc(s.router, s.engine, s.writer,
                   partial(propose_admin, s.inbox, timeout=cfg.propose_timeout), cfg)  # fmt: skip
        s.loop.log_gc = gc
        gcs[sid] = gc
        nursery.start_soon(gc.run)
    return gcs


def first_index(s: Store) -> int:
    r = s.router.get(1)
    return r.storage.first_index() if r is not None else -1


def disk_log(s: Store) -> list[int]:
    start, end = K.region_log_range(1)
    with s.engine.read() as txn:
        cur = txn.cursor(s.engine.dbs.raft_log)
        out = []
        if cur.set_range(start):
            for k in cur.iternext(values=False):
                if end is not None and k >= end:
                    break
                out.append(K.decode_log_key(k)[1])
    return out


async def test_a_cluster_compacts_and_purges_on_every_replica(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = LogGcConfig(tick_interval=1.0, threshold=20, count_limit=500, size_limit_bytes=1 << 20)
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        for i in range(60):
            assert (await c.kv(leader, Put(b"k%03d" % i, b"%d" % i))).result == WriteOk()
        start_gc(c, nursery, cfg)
        stores = list(c.net.stores.values())
        await wait_until(lambda: all(first_index(s) > 50 for s in stores))
        # Deleted on disk below each replica's first index, kept from it on.
        await wait_until(lambda: all(disk_log(s)[0] == first_index(s) for s in stores))
        for s in stores:
            r = s.router.get(1)
            assert r is not None and disk_log(s)[-1] == r.storage.last_index()
        assert (await c.kv(leader, Put(b"after", b"x"))).result == WriteOk()
        for s in stores:
            await wait_until(lambda s=s: s.router.get(1).applied_index >= 63)  # type: ignore[union-attr]
            got = (await c.kv(s, Get(b"k000"), mode=ReadMode.Stale)).result
            assert got == GetResult(b"0")
        nursery.cancel_scope.cancel()


async def test_a_follower_left_behind_is_compacted_past_and_caught_up_by_snapshot(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = LogGcConfig(tick_interval=1.0, threshold=20, count_limit=30, size_limit_bytes=1 << 20)
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        lagging = next(sid for sid, s in c.net.stores.items() if s is not leader)
        await c.stop_store(lagging)
        start_gc(c, nursery, cfg)
        for i in range(80):
            assert (await c.kv(leader, Put(b"k%03d" % i, b"%d" % i))).result == WriteOk()
        lr = leader.router.get(1)
        assert lr is not None
        # The count limit compacts past the stopped store's match.
        await wait_until(lambda: first_index(leader) > 40)
        back = await c.start_store(lagging)
        await wait_until(lambda: (r := back.router.get(1)) is not None
                         and r.applied_index >= lr.applied_index)  # fmt: skip
        got = (await c.kv(back, Get(b"k079"), mode=ReadMode.Stale)).result
        assert got == GetResult(b"79")
        m = back.metrics
        assert m is not None and m.raft.snapshots_applied.labels("ok")._value.get() >= 1
        nursery.cancel_scope.cancel()
