"""Stale peer GC (multiraft-design §2.2-2.3): a replica removed while it could not hear of it
is told so by a member of the newer configuration (``is_tombstone``) and becomes a tombstone;
a stale notice is harmless; a message for a larger peer id of the store replaces the old
replica."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from multiraft.raft import ConfChangeType, Message, MessageType
from multiraft.storage import Engine, WriteBatch, recover
from multiraft.store import Store
from multiraft.store.lifecycle import finish_destroy, stage_destroy
from multiraft.store.peer_create import check_create, create_replica
from multiraft.store.replica import RaftSettings, Replica
from multiraft.store.router import Router
from multiraft.wire.messages import (
    Get,
    GetResult,
    Put,
    RaftBatch,
    RaftEnvelope,
    ReadMode,
    RegionNotFound,
    WriteOk,
)
from regions.conf_change import PeerChange
from regions.region import Peer, PeerRole, RegionEpoch
from tests.store.harness import Cluster, wait_until

#: The epoch of a membership that removed and re-added a store's peer (ours is 1/1).
NEWER = RegionEpoch(3, 1)


def dropped(s: Store, t: MessageType, reason: str) -> float:
    m = s.metrics
    assert m is not None
    return float(m.raft.messages_dropped.labels(t.name, reason)._value.get())


def destroyed(r: Replica) -> bool:
    return r.destroyed  # a call: mypy must not narrow the flag across awaits


def deliver(to: Store, from_store: int, *envs: RaftEnvelope) -> None:
    """Hand envelopes to a store as its transport server would."""
    to.service.on_raft_batch(RaftBatch(from_store, list(envs)))


def notice(frm: Peer, to: Peer, epoch: RegionEpoch) -> RaftEnvelope:
    m = Message(msg_type=MessageType.MsgHup, to=to.id, from_=frm.id)
    return RaftEnvelope(1, frm, to, epoch, m, True, b"", b"")


def notices_sent(c: Cluster, sid: int) -> list[RaftEnvelope]:
    return [e for e in c.transports[sid].sent if e.is_tombstone]


def tombstone_on_disk(s: Store, region_id: int = 1) -> bool:
    recs = {rec.region_id: rec for rec in recover(s.engine, finish_snapshots=False)}
    rec = recs.get(region_id)
    return rec is not None and rec.tombstone and rec.raft_state.last_index == 0


async def test_follower_removed_while_partitioned_is_tombstoned_once_healed(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        assert (await c.kv(leader, Put(b"k", b"1"))).result == WriteOk()
        stale, other = (s for s in c.net.stores.values() if s is not leader)
        sr = stale.router.get(1)
        lr = leader.router.get(1)
        assert sr is not None and lr is not None
        gone = sr.peer
        # Cut the follower off, then demote and remove its peer (a voter is demoted first).
        c.net.isolate(stale.store_id)
        demote = [PeerChange(ConfChangeType.AddLearnerNode, gone)]
        assert await leader.steps.change_peers(1, lr.region.epoch, demote) == WriteOk()
        learner = Peer(gone.id, gone.store_id, PeerRole.Learner)
        remove = [PeerChange(ConfChangeType.RemoveNode, learner)]
        assert await leader.steps.change_peers(1, lr.region.epoch, remove) == WriteOk()
        members = (leader, other)
        await wait_until(
            lambda: all(s.router.get(1).region.peer_by_id(gone.id) is None for s in members)  # type: ignore[union-attr]
        )
        assert lr.region.epoch == RegionEpoch(3, 1)
        # Partitioned, it cannot know: still a live replica of the old membership.
        await trio.sleep(3)
        assert stale.router.get(1) is sr and not destroyed(sr)
        assert sr.region.epoch == RegionEpoch(1, 1)
        # Healed: its next (pre-)vote reaches the members, which answer with is_tombstone.
        c.net.heal()
        await wait_until(lambda: stale.router.get(1) is None)
        assert destroyed(sr)
        sent = [e for sid in (leader.store_id, other.store_id) for e in notices_sent(c, sid)]
        assert sent and all(e.to_peer == gone and e.region_epoch == RegionEpoch(3, 1) for e in sent)
        # A tombstone on disk (no raft state left) and in the router, with the final region.
        assert tombstone_on_disk(stale)
        tomb = stale.router.tombstones[1]
        assert tomb.region.epoch == RegionEpoch(1, 1) and tomb.region.peer_by_id(gone.id) == gone
        got = (await c.kv(stale, Get(b"k"), mode=ReadMode.Stale, epoch=RegionEpoch(1, 1))).result
        assert got == RegionNotFound(1)
        # It says nothing more for the region, so the members stop answering it.
        await trio.sleep(1)
        said = len([e for e in c.transports[stale.store_id].sent if e.region_id == 1])
        told = len(sent)
        await trio.sleep(5)
        assert len([e for e in c.transports[stale.store_id].sent if e.region_id == 1]) == said
        sent_after = [e for sid in (leader.store_id, other.store_id) for e in notices_sent(c, sid)]
        assert len(sent_after) == told
        # Later messages for it are refused, even initial ones of a newer membership.
        lp = lr.peer
        before = dropped(stale, MessageType.MsgRequestVote, "region_tombstone")
        vote = Message(msg_type=MessageType.MsgRequestVote, to=gone.id, from_=lp.id, term=99)
        deliver(stale, leader.store_id,
                RaftEnvelope(1, lp, gone, RegionEpoch(3, 1), vote, False, b"", b""))  # fmt: skip
        await wait_until(
            lambda: dropped(stale, MessageType.MsgRequestVote, "region_tombstone") > before
        )
        assert stale.router.get(1) is None and tombstone_on_disk(stale)
        # The others go on without it.
        assert (await c.kv(leader, Put(b"k", b"2"))).result == WriteOk()
        nursery.cancel_scope.cancel()


async def test_a_stale_tombstone_notice_is_harmless(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        f = next(s for s in c.net.stores.values() if s is not leader)
        fr = f.router.get(1)
        lr = leader.router.get(1)
        assert fr is not None and lr is not None
        me, lp = fr.peer, lr.peer
        assert fr.region.epoch == RegionEpoch(1, 1)
        deliver(
            f,
            leader.store_id,
            notice(lp, me, RegionEpoch(1, 1)),  # same membership: not newer
            notice(lp, me, RegionEpoch(0, 9)),  # older membership (a newer version is no matter)
            notice(lp, Peer(me.id - 50, f.store_id), RegionEpoch(5, 1)),  # for another peer id
        )
        await wait_until(lambda: dropped(f, MessageType.MsgHup, "stale_epoch") >= 2)
        await wait_until(lambda: dropped(f, MessageType.MsgHup, "stale_peer") >= 1)
        assert f.router.get(1) is fr and not destroyed(fr) and 1 not in f.router.tombstones
        assert not notices_sent(c, f.store_id)  # a notice is never answered with a notice
        # It is still a working member.
        assert (await c.kv(leader, Put(b"live", b"1"))).result == WriteOk()
        await wait_until(lambda: fr.applied_index >= lr.applied_index)
        got = (await c.kv(f, Get(b"live"), mode=ReadMode.Stale)).result
        assert got == GetResult(b"1")
        # Control: the same delivery with a newer membership does destroy it.
        deliver(f, leader.store_id, notice(lp, me, RegionEpoch(2, 1)))
        await wait_until(lambda: f.router.get(1) is None)
        assert destroyed(fr) and tombstone_on_disk(f)
        nursery.cancel_scope.cancel()


async def test_a_message_for_a_larger_peer_id_destroys_the_old_replica(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        f = next(s for s in c.net.stores.values() if s is not leader)
        fr = f.router.get(1)
        assert fr is not None
        old = fr.peer
        new = Peer(old.id + 1000, f.store_id)
        # The store was removed and re-added under a new peer id; the leader of that newer
        # membership is on a store of its own (store 9, unknown here: its replies go nowhere).
        ghost = Peer(900, 9)

        def heartbeat(epoch: RegionEpoch = NEWER) -> RaftEnvelope:
            m = Message(msg_type=MessageType.MsgHeartbeat, to=new.id, from_=ghost.id, term=50)
            return RaftEnvelope(1, ghost, new, epoch, m, False, b"", b"")

        # A larger peer id under a membership that is not newer than ours proves nothing.
        deliver(f, 9, heartbeat(RegionEpoch(1, 1)))
        await wait_until(lambda: dropped(f, MessageType.MsgHeartbeat, "stale_epoch") >= 1)
        assert f.router.get(1) is fr and not destroyed(fr)
        deliver(f, 9, heartbeat())
        await wait_until(lambda: f.router.get(1) is None)
        assert destroyed(fr) and tombstone_on_disk(f)
        tomb = f.router.tombstones[1]
        assert tomb.region.peer_by_id(old.id) == old and tomb.region.epoch == RegionEpoch(1, 1)
        # The next initial message creates the new peer, uninitialized (it waits for a snapshot).
        deliver(f, 9, heartbeat())
        await wait_until(lambda: f.router.get(1) is not None)
        nr = f.router.get(1)
        assert nr is not None and nr.peer == new and not nr.initialized
        # The old membership's messages to the old peer id no longer reach anything.
        before = dropped(f, MessageType.MsgHeartbeat, "stale_peer")
        await wait_until(lambda: dropped(f, MessageType.MsgHeartbeat, "stale_peer") > before)
        assert f.router.get(1) is nr and not destroyed(nr)
        assert (await c.kv(leader, Put(b"k", b"v"))).result == WriteOk()
        nursery.cancel_scope.cancel()


def test_an_uninitialized_replica_is_tombstoned_with_its_own_peer(tmp_path: Path) -> None:
    """Its region lists no peers, so its tombstone names its own: peer creation then keeps
    refusing that peer id (a late vote of the old membership must not resurrect it)."""
    vote = Message(msg_type=MessageType.MsgRequestVote, to=52, from_=51, term=7)

    def env(to: Peer, epoch: RegionEpoch) -> RaftEnvelope:
        return RaftEnvelope(5, Peer(51, 1), to, epoch, vote, False, b"", b"")

    with Engine.open(tmp_path / "db", sync=False) as engine:
        router = Router()
        batch = WriteBatch()
        r = create_replica(env(Peer(52, 2), RegionEpoch(2, 3)), engine=engine,
                           settings=RaftSettings(), router=router, batch=batch, producer=None)  # fmt: skip
        assert not r.initialized
        stage_destroy(r, batch)
        batch.commit(engine)
        finish_destroy(r, router)
        assert router.get(5) is None
        late = env(Peer(52, 2), RegionEpoch(9, 9))
        assert check_create(late, store_id=2, router=router) == "region_tombstone"
        assert check_create(env(Peer(60, 2), RegionEpoch(9, 9)), store_id=2, router=router) is None
        (rec,) = recover(engine)
        assert rec.tombstone and rec.region.peers == [Peer(52, 2)]
        assert rec.raft_state.last_index == 0 and rec.hard_state.term == 0
