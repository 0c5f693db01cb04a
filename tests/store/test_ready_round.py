"""The ready round with three stores in one trio run: real engines in tmp dirs, an in-memory
transport that checks persist-before-send on every message, a fake placement that bootstraps
region 1, and a MockClock driving the ticks."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

import multiraft.store.ready_loop as ready_loop_mod
from multiraft.raft import Entry
from multiraft.store import Store
from multiraft.store.apply import ApplyContext
from multiraft.store.replica import Replica
from multiraft.wire.messages import (
    BatchPut,
    Cas,
    CasResult,
    Delete,
    EpochNotMatch,
    Get,
    GetResult,
    Internal,
    KeyNotInRegion,
    KvResponse,
    NotLeader,
    Put,
    ReadMode,
    RegionNotFound,
    Scan,
    ScanResult,
    ServerIsBusy,
    StaleCommand,
    WriteOk,
)
from regions.region import RegionEpoch
from tests.store.harness import Cluster, concurrently, wait_until


async def started(tmp_path: Path, nursery: trio.Nursery, **config: object) -> Cluster:
    c = Cluster(tmp_path, nursery, **config)
    await c.start()
    await c.wait_leader()
    return c


def followers(c: Cluster, leader: Store) -> list[Store]:
    return [s for s in c.net.stores.values() if s is not leader]


async def test_elect_write_and_read_linearizably(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = await started(tmp_path, nursery)
        leader = await c.wait_leader()
        # Every store bootstrapped the same region from placement's store heartbeat reply.
        assert all(s.router.get(1) is not None for s in c.net.stores.values())
        resp = await c.kv(leader, Put(b"k", b"v1"))
        assert resp.result == WriteOk()
        assert (await c.kv(leader, Get(b"k"))).result == GetResult(b"v1")
        # Writes answered OK are on a quorum: each follower applies them too.
        await wait_until(lambda: all(
            s.router.get(1).applied_index >= leader.router.get(1).applied_index  # type: ignore[union-attr]
            for s in c.net.stores.values()
        ))  # fmt: skip
        for s in followers(c, leader):
            assert (await c.kv(s, Get(b"k"), mode=ReadMode.Stale)).result == GetResult(b"v1")
        # Placement heard from the leader.
        assert any(hb[1].store_id == leader.store_id for hb in c.placement.heartbeats)
        # The persist-before-send checks ran on real votes and append acks.
        assert sum(t.checked for t in c.transports.values()) > 0
        # The round's metrics.
        m = leader.metrics
        assert m is not None

        def value(metric: object, *labels: str) -> float:
            child = metric.labels(*labels) if labels else metric  # type: ignore[attr-defined]
            return child._value.get()  # type: ignore[no-any-return]

        assert value(m.raft.ready_rounds) > 0 and value(m.raft.appended_entries) > 0
        assert value(m.raft.messages_sent, "MsgAppend") > 0
        assert value(m.raft.messages_received, "MsgAppendResponse") > 0
        assert value(m.raft.proposals, "ok") >= 1 and value(m.raft.leader_changes) >= 1
        assert value(m.kv.requests, "put", "ok") == 1 and value(m.kv.requests, "get", "ok") == 1
        nursery.cancel_scope.cancel()


async def test_a_round_batches_proposals_into_one_append(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Writes arriving together go into one propose_batch: one round, one commit."""
    async with trio.open_nursery() as nursery:
        c = await started(tmp_path, nursery)
        leader = await c.wait_leader()
        r = leader.router.get(1)
        assert r is not None
        before = r.raw_node.raft.raft_log.last_index()
        rounds = leader.loop.rounds
        ops = [lambda i=i: c.kv(leader, Put(b"k%d" % i, b"v")) for i in range(50)]
        results = await concurrently(*ops)
        assert all(isinstance(x, KvResponse) and x.result == WriteOk() for x in results)
        assert r.raw_node.raft.raft_log.last_index() == before + 50
        # 50 writes took a handful of rounds on the leader, not 50.
        assert leader.loop.rounds - rounds < 15
        got = await c.kv(leader, Scan(b"k", b"l", 0))
        assert isinstance(got.result, ScanResult) and len(got.result.pairs) == 50
        nursery.cancel_scope.cancel()


async def test_errors_not_leader_epoch_key_region_busy(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = await started(tmp_path, nursery)
        leader = await c.wait_leader()
        lr = leader.router.get(1)
        assert lr is not None
        follower = followers(c, leader)[0]
        await wait_until(lambda: follower.router.get(1).raw_node.raft.leader_id != 0)  # type: ignore[union-attr]
        got = (await c.kv(follower, Put(b"a", b"1"))).result
        assert isinstance(got, NotLeader) and got.leader == lr.peer
        got = (await c.kv(follower, Get(b"a"))).result
        assert isinstance(got, NotLeader) and got.leader == lr.peer
        got = (await c.kv(leader, Put(b"a", b"1"), epoch=RegionEpoch(1, 0))).result
        assert isinstance(got, EpochNotMatch) and got.current_regions[0].id == 1
        got = (await c.kv(leader, Get(b"a"), region_id=99)).result
        assert got == RegionNotFound(99)
        # Keys LMDB cannot hold: a read finds nothing, a write is refused before Raft.
        assert (await c.kv(leader, Get(b""))).result == GetResult(None)
        got = (await c.kv(leader, Put(b"", b"1"))).result
        assert isinstance(got, Internal) and "keys must be" in got.message
        got = (await c.kv(leader, Put(b"x" * 600, b"1"))).result
        assert isinstance(got, Internal)
        # The inbox bound: over it, requests are refused at once.
        leader.inbox._max_requests = 0
        got = (await c.kv(leader, Put(b"a", b"1"))).result
        assert isinstance(got, ServerIsBusy)
        nursery.cancel_scope.cancel()


async def test_key_not_in_region(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        c = await started(tmp_path, nursery)
        leader = await c.wait_leader()
        r = leader.router.get(1)
        assert r is not None
        # Narrow the region in memory (as a split would) to check the range guard.
        r.region.end_key = b"m"
        got = (await c.kv(leader, Put(b"x", b"1"))).result
        assert got == KeyNotInRegion(b"x", 1, b"", b"m")
        got = (await c.kv(leader, Get(b"x"), mode=ReadMode.Stale)).result
        assert got == KeyNotInRegion(b"x", 1, b"", b"m")
        nursery.cancel_scope.cancel()


async def test_read_modes(tmp_path: Path, autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        c = await started(tmp_path, nursery)
        leader = await c.wait_leader()
        m = leader.metrics
        assert m is not None
        assert (await c.kv(leader, Put(b"r", b"1"))).result == WriteOk()

        def reads(kind: str) -> float:
            return m.raft.reads.labels(kind)._value.get()  # type: ignore[no-any-return]

        async def counted(kind: str, n: float) -> None:
            # Counters are published at the end of the round that answered.
            await wait_until(lambda: reads(kind) == n)

        base = {k: reads(k) for k in ("read_index", "lease", "stale")}
        assert (await c.kv(leader, Get(b"r"))).result == GetResult(b"1")
        await counted("read_index", base["read_index"] + 1)
        # The confirmed ReadIndex started a lease: a Lease read is served locally.
        assert (await c.kv(leader, Get(b"r"), mode=ReadMode.Lease)).result == GetResult(b"1")
        await counted("lease", base["lease"] + 1)
        # Once the lease has run out, a Lease read falls back to ReadIndex.
        r = leader.router.get(1)
        assert r is not None
        r.lease.expire()
        assert (await c.kv(leader, Get(b"r"), mode=ReadMode.Lease)).result == GetResult(b"1")
        await counted("read_index", base["read_index"] + 2)
        assert reads("lease") == base["lease"] + 1
        assert (await c.kv(leader, Get(b"r"), mode=ReadMode.Stale)).result == GetResult(b"1")
        await counted("stale", base["stale"] + 1)
        nursery.cancel_scope.cancel()


async def test_linearizable_reads_share_one_read_index(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with trio.open_nursery() as nursery:
        c = await started(tmp_path, nursery)
        leader = await c.wait_leader()
        assert (await c.kv(leader, Put(b"q", b"1"))).result == WriteOk()
        calls: list[bytes] = []
        r = leader.router.get(1)
        assert r is not None
        real = r.raw_node.read_index

        def counting(ctx: bytes) -> None:
            calls.append(ctx)
            real(ctx)

        monkeypatch.setattr(r.raw_node, "read_index", counting)
        results = await concurrently(*[lambda: c.kv(leader, Get(b"q")) for _ in range(20)])
        assert all(isinstance(x, KvResponse) and x.result == GetResult(b"1") for x in results)
        assert 1 <= len(calls) <= 2 and len(set(calls)) == len(calls)
        nursery.cancel_scope.cancel()


async def test_cas_delete_batch_put_through_the_cluster(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = await started(tmp_path, nursery)
        leader = await c.wait_leader()
        assert (await c.kv(leader, Cas(b"c", None, b"1"))).result == CasResult(True, None)
        assert (await c.kv(leader, Cas(b"c", None, b"2"))).result == CasResult(False, b"1")
        assert (await c.kv(leader, BatchPut([(b"x", b"1"), (b"y", b"2")]))).result == WriteOk()
        assert (await c.kv(leader, Delete(b"x"))).result == WriteOk()
        got = (await c.kv(leader, Scan(b"", b"", 10))).result
        assert got == ScanResult([(b"c", b"1"), (b"y", b"2")])
        nursery.cancel_scope.cancel()


async def test_stale_command_when_the_leader_loses_its_term(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """An isolated leader's proposal cannot commit; when a newer leader's term reaches it, the
    proposal fails with StaleCommand (indeterminate), exactly once."""
    async with trio.open_nursery() as nursery:
        c = await started(tmp_path, nursery, request_timeout=60.0)
        old = await c.wait_leader()
        assert (await c.kv(old, Put(b"w", b"0"))).result == WriteOk()
        c.net.isolate(old.store_id)
        result: list[KvResponse] = []

        async def write() -> None:
            result.append(await c.kv(old, Put(b"w", b"1")))

        nursery.start_soon(write)
        await wait_until(lambda: any(
            s is not old and s.router.get(1).is_leader()  # type: ignore[union-attr]
            for s in c.net.stores.values()
        ))  # fmt: skip
        c.net.heal()
        await wait_until(lambda: bool(result))
        # The old leader stepped down (check-quorum) or saw the new term: either way the
        # proposal it accepted can no longer be vouched for.
        assert result[0].result == StaleCommand()
        r = old.router.get(1)
        assert r is not None and len(r.proposals) == 0
        nursery.cancel_scope.cancel()


async def test_restart_recovers_data_and_raft_state_without_reapplying(
    tmp_path: Path, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    applied: dict[int, list[int]] = {}
    real = ready_loop_mod.apply_entries

    def recording(r: Replica, entries: list[Entry], ctx: ApplyContext, now: float) -> None:
        applied.setdefault(r.loop_store_id, []).extend(e.index for e in entries)  # type: ignore[attr-defined]
        real(r, entries, ctx, now)

    async with trio.open_nursery() as nursery:
        c = await started(tmp_path, nursery)
        leader = await c.wait_leader()
        for i in range(10):
            assert (await c.kv(leader, Put(b"p%d" % i, b"%d" % i))).result == WriteOk()
        victim = followers(c, leader)[0]
        sid = victim.store_id
        vr = victim.router.get(1)
        assert vr is not None
        await wait_until(lambda: vr.applied_index >= leader.router.get(1).applied_index)  # type: ignore[union-attr]
        hs_before = vr.storage.hard_state()
        applied_before = vr.applied_index
        await c.stop_store(sid)
        # More writes while it is down.
        for i in range(10, 15):
            assert (await c.kv(leader, Put(b"p%d" % i, b"%d" % i))).result == WriteOk()

        monkeypatch.setattr(ready_loop_mod, "apply_entries", recording)
        for s in c.net.stores.values():
            for rep in s.router:
                rep.loop_store_id = s.store_id  # type: ignore[attr-defined]
        back = await c.start_store(sid)
        br = back.router.get(1)
        assert br is not None
        br.loop_store_id = sid  # type: ignore[attr-defined]
        # Recovered from disk: the raft state and the applied index as they were.
        assert br.applied_index == applied_before
        rec_hs = br.storage.hard_state()
        assert rec_hs.term == hs_before.term and rec_hs.vote == hs_before.vote
        assert rec_hs.commit >= applied_before
        for i in range(10):
            got = (await c.kv(back, Get(b"p%d" % i), mode=ReadMode.Stale)).result
            assert got == GetResult(b"%d" % i)
        # It catches up, applying only entries after what it had applied.
        await wait_until(lambda: br.applied_index >= leader.router.get(1).applied_index)  # type: ignore[union-attr]
        assert applied.get(sid) and min(applied[sid]) > applied_before
        got = (await c.kv(back, Get(b"p14"), mode=ReadMode.Stale)).result
        assert got == GetResult(b"14")
        nursery.cancel_scope.cancel()


async def test_leader_restart_keeps_every_acknowledged_write(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = await started(tmp_path, nursery)
        leader = await c.wait_leader()
        for i in range(5):
            assert (await c.kv(leader, Put(b"l%d" % i, b"%d" % i))).result == WriteOk()
        sid = leader.store_id
        await c.stop_store(sid)
        new = await c.wait_leader()
        assert new.store_id != sid
        assert (await c.kv(new, Put(b"l5", b"5"))).result == WriteOk()
        await c.start_store(sid)
        for i in range(6):
            assert (await c.kv(new, Get(b"l%d" % i))).result == GetResult(b"%d" % i)
        nursery.cancel_scope.cancel()


async def test_writes_are_durable_before_they_are_acknowledged(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The test writer yields before writing each batch, so an answer sent before its batch
    committed would be observed here with the data still missing from LMDB."""
    async with trio.open_nursery() as nursery:
        c = await started(tmp_path, nursery)
        leader = await c.wait_leader()

        def on_disk(key: bytes) -> bytes | None:
            with leader.engine.read() as txn:
                return txn.get(key, db=leader.engine.dbs.data)

        async def put(i: int) -> None:
            key = b"d%03d" % i
            assert (await c.kv(leader, Put(key, b"v"))).result == WriteOk()
            assert on_disk(key) == b"v"

        await concurrently(*[lambda i=i: put(i) for i in range(30)])
        nursery.cancel_scope.cancel()
