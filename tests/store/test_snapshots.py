"""Snapshots and membership through the store: a follower behind a compacted log catches up by
snapshot; a new peer added by a conf change is created by the leader's first heartbeat, waits
uninitialized, and becomes initialized by a snapshot. (Removal: tests/store/test_membership.py.)"""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from multiraft.raft import ConfChange, ConfChangeType
from multiraft.store import Store
from multiraft.wire.command_codec import ChangePeer, CmdHeader, RaftCmd, encode_cmd
from multiraft.wire.messages import Get, GetResult, Put, ReadMode, WriteOk
from regions.region import Peer, RegionEpoch
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
