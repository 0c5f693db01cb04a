"""Snapshots and membership through the store: a follower behind a compacted log catches up by
snapshot; a new peer added by a conf change is created by the leader's first heartbeat, waits
uninitialized, and becomes initialized by a snapshot. (Removal: tests/store/test_membership.py.)"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client import CollectorRegistry

from multiraft.metrics.raft import RaftMetrics
from multiraft.raft import ConfChange, ConfChangeType, ConfState, Message, MessageType
from multiraft.raft.types import Snapshot, SnapshotMetadata
from multiraft.storage import Engine, StorageWriter, WriteBatch, snapshot
from multiraft.storage.staging import SnapshotStager
from multiraft.store import Store
from multiraft.store.snapshots import ReceivedStream, SnapshotReceiver
from multiraft.transport import ConnectionLost
from multiraft.wire.command_codec import ChangePeer, CmdHeader, RaftCmd, encode_cmd
from multiraft.wire.messages import (
    Get,
    GetResult,
    Put,
    RaftEnvelope,
    ReadMode,
    SnapshotAck,
    SnapshotAckStatus,
    SnapshotChunk,
    WriteOk,
)
from multiraft.wire.records import (
    SnapshotData,
    SnapshotFooter,
    SnapshotHeader,
    decode_snapshot_part,
    encode_snapshot_part,
)
from regions.local_state import ApplyState, PeerState, RegionLocalState
from regions.region import Peer, Region, RegionEpoch
from tests.store.harness import Cluster, wait_until


def applied(s: Store) -> int:
    r = s.router.get(1)
    return r.applied_index if r is not None else -1


async def test_follower_behind_a_compacted_log_gets_a_snapshot(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        lagging = next(s for s in c.net.stores.values() if s is not leader)
        sid = lagging.store_id
        await c.stop_store(sid)
        for i in range(20):
            assert (await c.kv(leader, Put(b"s%02d" % i, b"%d" % i))).result == WriteOk()
        lr = leader.router.get(1)
        assert lr is not None
        # Compact the leader's log past everything the lagging store has.
        lr.storage.compact(lr.applied_index)
        assert lr.storage.first_index() == lr.applied_index
        m = leader.metrics
        assert m is not None
        back = await c.start_store(sid)
        await wait_until(lambda: applied(back) >= lr.applied_index)
        for i in (0, 19):
            got = (await c.kv(back, Get(b"s%02d" % i), mode=ReadMode.Stale)).result
            assert got == GetResult(b"%d" % i)
        bm = back.metrics
        assert bm is not None and bm.raft.snapshots_applied.labels("ok")._value.get() >= 1
        # The sender counts its snapshot once the ack is back (possibly after the apply).
        await wait_until(lambda: m.raft.snapshots_generated.labels("ok")._value.get() >= 1)
        # It keeps replicating normally afterwards.
        assert (await c.kv(leader, Put(b"after", b"x"))).result == WriteOk()
        await wait_until(lambda: applied(back) >= lr.applied_index)
        got = (await c.kv(back, Get(b"after"), mode=ReadMode.Stale)).result
        assert got == GetResult(b"x")
        nursery.cancel_scope.cancel()


async def test_new_peer_is_created_uninitialized_then_initialized_by_snapshot(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery, n=4)
        await c.start()
        leader = await c.wait_leader()
        # Store 4 is registered but not in region 1 (placement bootstraps on three stores).
        s4 = c.store(4)
        assert s4.router.get(1) is None
        for i in range(5):
            assert (await c.kv(leader, Put(b"n%d" % i, b"%d" % i))).result == WriteOk()
        lr = leader.router.get(1)
        assert lr is not None
        # Add peer 104 on store 4 (issue 5 will do this through an admin command). The loop is
        # between rounds whenever this task runs, so proposing here is safe.
        new = Peer(104, 4)
        ctx = encode_cmd(
            RaftCmd(CmdHeader(1, lr.region.epoch), admin=ChangePeer(ConfChangeType.AddNode, new))
        )
        lr.raw_node.propose_conf_change(
            ctx, ConfChange(change_type=ConfChangeType.AddNode, node_id=104)
        )
        leader.loop.dirty[1] = lr
        await wait_until(lambda: lr.region.peer_by_id(104) is not None)
        assert lr.region.epoch == RegionEpoch(2, 1)
        # The leader's first heartbeat (commit 0) created the replica; a snapshot initialized it.
        await wait_until(lambda: s4.router.get(1) is not None and s4.router.get(1).initialized)  # type: ignore[union-attr]
        await wait_until(lambda: applied(s4) >= lr.applied_index)
        r4 = s4.router.get(1)
        assert r4 is not None and r4.peer == new and r4.region.epoch == RegionEpoch(2, 1)
        got = (await c.kv(s4, Get(b"n4"), mode=ReadMode.Stale)).result
        assert got == GetResult(b"4")
        # Writes now need and reach four voters.
        assert (await c.kv(leader, Put(b"n5", b"5"))).result == WriteOk()
        await wait_until(lambda: applied(s4) >= lr.applied_index)
        assert (await c.kv(s4, Get(b"n5"), mode=ReadMode.Stale)).result == GetResult(b"5")
        nursery.cancel_scope.cancel()


# ----------------------------------------------------------------------
# The receiver: staging into LMDB, the receive limit, nothing left behind

REGION7 = Region(7, b"k", b"l", RegionEpoch(3, 4), [Peer(71, 1), Peer(72, 2)])


def source_engine(path: Path, n: int, value_size: int) -> Engine:
    """A store holding region 7 (keys k...) at applied index 30, ``n`` values of ``value_size``."""
    engine = Engine.open(path, sync=False)
    b = WriteBatch()
    b.put_region_state(7, RegionLocalState(PeerState.Normal, REGION7))
    b.put_apply_state(7, ApplyState(30, 30, 2))
    b.put_conf_state(7, ConfState(voters=[71, 72]))
    for i in range(n):
        b.put(b"k%08d" % i, bytes([i % 251]) * value_size)
    b.commit(engine)
    return engine


def envelope_for(header: SnapshotHeader) -> RaftEnvelope:
    md = SnapshotMetadata(header.conf_state, header.index, header.term)
    msg = Message(MessageType.MsgSnapshot, to=71, from_=72, term=header.term,
                  snapshot=Snapshot(metadata=md))  # fmt: skip
    return RaftEnvelope(header.region_id, Peer(72, 2), Peer(71, 1), header.region.epoch, msg)


async def as_stream(
    parts: Iterator[bytes], *, snapshot_id: int = 1, hold: trio.Event | None = None
) -> AsyncIterator[SnapshotChunk]:
    """The chunks of ``parts`` as a sender streams them, produced lazily (one part ahead);
    with ``hold``, the stream stops after its first chunk until the event is set."""
    part = next(parts)
    header = decode_snapshot_part(part)
    assert isinstance(header, SnapshotHeader)
    env: RaftEnvelope | None = envelope_for(header)
    seq = 0
    while True:
        following = next(parts, None)
        yield SnapshotChunk(7, snapshot_id, seq, part, following is None, env)
        if hold is not None:
            await hold.wait()
        if following is None:
            return
        env, part, seq = None, following, seq + 1


async def receive(
    rx: SnapshotReceiver, chunks: AsyncIterator[SnapshotChunk]
) -> ReceivedStream | SnapshotAck:
    first = await chunks.__anext__()
    return await rx.receive(first, chunks)


def staging_entries(engine: Engine) -> int:
    with engine.read() as txn:
        entries: int = txn.stat(engine.dbs.snap_staging)["entries"]
    return entries


def gauge(m: RaftMetrics, name: str) -> float:
    value: float = getattr(m, name)._value.get()
    return value


async def test_a_large_snapshot_is_staged_with_memory_per_chunk(tmp_path: Path) -> None:
    """20 MiB in 80 chunks of 256 KiB: the receiver holds about one staging transaction of
    chunks (1 MiB) at a time, never the snapshot; applied from staging, the data is exact."""
    with source_engine(tmp_path / "src", 20 * 1024, 1024) as src, \
            Engine.open(tmp_path / "dst", sync=False) as dst:  # fmt: skip
        metrics = RaftMetrics(CollectorRegistry())
        writer = StorageWriter(dst)
        rx = SnapshotReceiver(dst, lambda: writer, txn_bytes=1 << 20, metrics=metrics)
        parts = snapshot.generate(src, 7, chunk_bytes=256 << 10)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            got = await receive(rx, as_stream(parts))
            peak = tracemalloc.get_traced_memory()[1] - before
        finally:
            tracemalloc.stop()
        assert isinstance(got, ReceivedStream)
        staged = got.staged
        assert staged.total_bytes > 20 << 20 and len(staged) > 80
        assert peak < 4 << 20, f"receiving took {peak} bytes of memory"
        assert len(got.parts) == len(staged)  # the ready loop's name for the staged stream
        assert staging_entries(dst) == len(staged)
        assert gauge(metrics, "snapshot_staged_bytes") == staged.total_bytes
        assert gauge(metrics, "snapshots_receiving") == 0
        await writer.run(snapshot.apply_staged, dst, staged)
        assert gauge(metrics, "snapshot_staged_bytes") == 0
        assert staging_entries(dst) == 0
        with src.read() as a, dst.read() as b:
            want = list(a.cursor(src.dbs.data))
            assert list(b.cursor(dst.dbs.data)) == want and len(want) == 20 * 1024


async def test_receives_over_the_limit_are_answered_busy(tmp_path: Path) -> None:
    with source_engine(tmp_path / "src", 300, 100) as src, \
            Engine.open(tmp_path / "dst", sync=False) as dst:  # fmt: skip
        parts = list(snapshot.generate(src, 7, chunk_bytes=4096))
        metrics = RaftMetrics(CollectorRegistry())
        writer = StorageWriter(dst)
        rx = SnapshotReceiver(dst, lambda: writer, limit=2, txn_bytes=4096, metrics=metrics)
        release = trio.Event()
        results: list[ReceivedStream | SnapshotAck] = []

        async def slow(sid: int) -> None:
            results.append(await receive(rx, as_stream(iter(parts), snapshot_id=sid, hold=release)))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow, 1)
            nursery.start_soon(slow, 2)
            with trio.fail_after(10):
                await trio.testing.wait_all_tasks_blocked()  # both wait for their 2nd chunk
            assert rx.receiving == 2
            assert gauge(metrics, "snapshots_receiving") == 2
            busy = await receive(rx, as_stream(iter(parts), snapshot_id=3))
            assert isinstance(busy, SnapshotAck)
            assert (busy.status, busy.snapshot_id, busy.seq) == (SnapshotAckStatus.Busy, 3, 0)
            release.set()
        assert all(isinstance(r, ReceivedStream) for r in results)
        assert gauge(metrics, "snapshots_receiving") == 0
        assert metrics.snapshots_received.labels("busy")._value.get() == 1
        assert metrics.snapshots_received.labels("ok")._value.get() == 2
        # Below the limit again: taken.
        assert isinstance(await receive(rx, as_stream(iter(parts), snapshot_id=4)), ReceivedStream)


def _bad(parts: list[bytes], how: str) -> list[bytes]:
    if how == "bad chunk":
        return [*parts[:6], encode_snapshot_part(SnapshotData(6, [(b"zzz", b"v")])), *parts[7:]]
    if how == "bad footer":
        return [*parts[:-1], encode_snapshot_part(SnapshotFooter(1, 1, 1))]
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["bad chunk", "bad footer", "too large", "cut short", "broken"])
async def test_refused_and_broken_streams_leave_no_staging(tmp_path: Path, how: str) -> None:
    with source_engine(tmp_path / "src", 300, 100) as src, \
            Engine.open(tmp_path / "dst", sync=False) as dst:  # fmt: skip
        parts = list(snapshot.generate(src, 7, chunk_bytes=2048))
        assert len(parts) > 12
        metrics = RaftMetrics(CollectorRegistry())
        writer = StorageWriter(dst)
        rx = SnapshotReceiver(dst, lambda: writer, txn_bytes=4096, metrics=metrics,
                              max_bytes=8192 if how == "too large" else 1 << 30)  # fmt: skip
        written: list[int] = []
        real_stage = SnapshotStager.stage

        def spy(self: SnapshotStager, engine: Engine, chunk: list[bytes]) -> int:
            n = real_stage(self, engine, chunk)
            written.append(n)
            return n

        async def cut(
            stream: AsyncIterator[SnapshotChunk], broken: bool
        ) -> AsyncIterator[SnapshotChunk]:
            async for c in stream:
                if c.seq == 10:
                    if broken:
                        raise ConnectionLost("the sender went away")
                    return
                yield c

        if how in ("bad chunk", "bad footer"):
            stream = as_stream(iter(_bad(parts, how)))
        elif how in ("cut short", "broken"):
            stream = cut(as_stream(iter(parts)), how == "broken")
        else:
            stream = as_stream(iter(parts))
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(SnapshotStager, "stage", spy)
            if how == "broken":
                with pytest.raises(ConnectionLost):
                    await receive(rx, stream)
                assert staging_entries(dst) > 0
                # Queued for deletion (a cancelled receive cannot wait for it): the receiver's
                # run() task or its next receive deletes it.
                assert await rx.collect() == 1
            else:
                got = await receive(rx, stream)
                assert isinstance(got, SnapshotAck) and got.status == SnapshotAckStatus.Rejected
        assert sum(written) > 0  # parts had been staged before the stream went wrong
        result = "failed" if how == "broken" else "rejected"
        assert metrics.snapshots_received.labels(result)._value.get() == 1
        assert staging_entries(dst) == 0
        assert gauge(metrics, "snapshot_staged_bytes") == 0
        assert rx.statistics().deleted == 1


async def test_a_stream_dropped_unapplied_is_deleted(tmp_path: Path) -> None:
    """Raft ignored it, a newer one replaced it, or the loop took it after the sender gave up:
    the handle is garbage, and the receiver's task deletes its staging."""
    with source_engine(tmp_path / "src", 300, 100) as src, \
            Engine.open(tmp_path / "dst", sync=False) as dst:  # fmt: skip
        parts = list(snapshot.generate(src, 7, chunk_bytes=2048))
        metrics = RaftMetrics(CollectorRegistry())
        writer = StorageWriter(dst)
        rx = SnapshotReceiver(dst, lambda: writer, txn_bytes=4096, metrics=metrics)
        async with trio.open_nursery() as nursery:
            await nursery.start(rx.run)
            kept = await receive(rx, as_stream(iter(parts), snapshot_id=1))
            dropped = await receive(rx, as_stream(iter(parts), snapshot_id=2))
            assert isinstance(kept, ReceivedStream) and isinstance(dropped, ReceivedStream)
            assert staging_entries(dst) == 2 * len(parts)
            del dropped
            await wait_until(lambda: staging_entries(dst) == len(parts), seconds=10)
            assert gauge(metrics, "snapshot_staged_bytes") == kept.staged.total_bytes
            # The one still held is untouched and applies.
            await writer.run(snapshot.apply_staged, dst, kept.staged)
            del kept
            await trio.testing.wait_all_tasks_blocked()
            assert staging_entries(dst) == 0 and rx.statistics().deleted == 1
            assert gauge(metrics, "snapshot_staged_bytes") == 0
            nursery.cancel_scope.cancel()


async def test_a_snapshot_the_loop_refuses_leaves_no_staging(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Through KvService.on_snapshot: no replica of region 7 here, so the loop answers
    Rejected, and the stream staged for it is deleted before the sender hears so."""
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        await c.wait_leader()
        s1 = c.store(1)
        with source_engine(tmp_path / "src", 300, 100) as src:
            parts = list(snapshot.generate(src, 7, chunk_bytes=2048))
        stream = as_stream(iter(parts))
        first = await stream.__anext__()
        ack = await s1.service.on_snapshot(first, stream)
        assert ack.status == SnapshotAckStatus.Rejected and "no replica" in ack.reason
        assert staging_entries(s1.engine) == 0
        m = s1.metrics
        assert m is not None and m.raft.snapshots_received.labels("ok")._value.get() == 1
        assert gauge(m.raft, "snapshot_staged_bytes") == 0
        nursery.cancel_scope.cancel()
