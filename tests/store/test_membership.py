"""Membership changes through the store: a move by learner, joint enter/leave and removal; the
propose-time refusals (one pending change, demote before remove, not the leader itself, stale
epochs); a peer that applies its own removal is tombstoned; steps arriving in placement's
heartbeat replies are executed; a conf change racing a leader change stays consistent."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from multiraft.raft.types import ConfChangeType
from multiraft.store import Store
from multiraft.store.proposals import Answer
from multiraft.wire.command_codec import ChangePeer, ChangePeerV2, CmdHeader, RaftCmd, encode_cmd
from multiraft.wire.messages import (
    EpochNotMatch,
    Get,
    GetResult,
    Internal,
    NotLeader,
    Put,
    ReadMode,
    RegionNotFound,
    ServerIsBusy,
    StaleCommand,
    Timeout,
    WriteOk,
)
from multiraft.wire.placement_messages import RegionHeartbeatReply
from regions.conf_change import PeerChange, to_conf_change_v2
from regions.region import Peer, PeerRole, Region, RegionEpoch
from regions.scheduling import JointLeave, TransferLeader
from tests.store.harness import Cluster, wait_until

ADD_LEARNER = ConfChangeType.AddLearnerNode
ADD_VOTER = ConfChangeType.AddNode
REMOVE = ConfChangeType.RemoveNode


def region_on(s: Store, region_id: int = 1) -> Region | None:
    r = s.router.get(region_id)
    return r.region if r is not None and r.initialized else None


def converged(c: Cluster, stores: list[int], epoch: RegionEpoch) -> bool:
    regions = [region_on(c.store(s)) for s in stores]
    return all(g is not None and g.epoch == epoch for g in regions) and all(
        g == regions[0] for g in regions
    )


async def change(c: Cluster, changes: list[PeerChange]) -> Answer:
    leader = await c.wait_leader()
    r = leader.router.get(1)
    assert r is not None
    return await leader.steps.change_peers(1, r.region.epoch, changes)


async def follower_peer(c: Cluster) -> Peer:
    leader = await c.wait_leader()
    region = region_on(leader)
    assert region is not None
    return next(p for p in region.peers if p.store_id != leader.store_id and p.store_id <= 3)


async def test_move_a_replica_by_learner_joint_consensus_and_removal(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery, n=4)
        await c.start()
        leader = await c.wait_leader()
        for i in range(10):
            assert (await c.kv(leader, Put(b"k%d" % i, b"%d" % i))).result == WriteOk()
        new = Peer(201, 4, PeerRole.Learner)
        old = await follower_peer(c)
        # 1. Add a learner on store 4: created by a heartbeat, caught up by snapshot.
        assert await change(c, [PeerChange(ADD_LEARNER, new)]) == WriteOk()
        s4 = c.store(4)
        await wait_until(lambda: converged(c, [1, 2, 3, 4], RegionEpoch(2, 1)))
        r4 = s4.router.get(1)
        assert r4 is not None and r4.peer == new
        # 2. Enter joint: promote the learner, demote the old voter.
        assert await change(c, [PeerChange(ADD_VOTER, new), PeerChange(ADD_LEARNER, old)]) == WriteOk()
        await wait_until(lambda: converged(c, [1, 2, 3, 4], RegionEpoch(4, 1)))
        roles = {p.store_id: p.role for p in region_on(s4).peers}  # type: ignore[union-attr]
        assert roles[4] == PeerRole.IncomingVoter and roles[old.store_id] == PeerRole.DemotingVoter
        # 3. Leave joint.
        assert await change(c, []) == WriteOk()
        await wait_until(lambda: converged(c, [1, 2, 3, 4], RegionEpoch(6, 1)))
        roles = {p.store_id: p.role for p in region_on(s4).peers}  # type: ignore[union-attr]
        assert roles[4] == PeerRole.Voter and roles[old.store_id] == PeerRole.Learner
        # 4. Remove the old peer (a learner now): it destroys itself.
        gone = Peer(old.id, old.store_id, PeerRole.Learner)
        assert await change(c, [PeerChange(REMOVE, gone)]) == WriteOk()
        s_old = c.store(old.store_id)
        await wait_until(lambda: s_old.router.get(1) is None)
        assert 1 in s_old.router.tombstones
        rest = [s for s in (1, 2, 3, 4) if s != old.store_id]
        await wait_until(lambda: converged(c, rest, RegionEpoch(7, 1)))
        # The new replica has every write and takes part in new ones.
        leader = await c.wait_leader()
        assert (await c.kv(leader, Put(b"after", b"move"))).result == WriteOk()
        await wait_until(lambda: r4.applied_index >= leader.router.get(1).applied_index)  # type: ignore[union-attr]
        for key, want in ((b"k9", b"9"), (b"after", b"move")):
            got = await c.kv(s4, Get(key), mode=ReadMode.Stale)
            assert got.result == GetResult(want)
        nursery.cancel_scope.cancel()


async def test_membership_changes_the_rules_refuse_never_reach_the_log(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery, n=4)
        await c.start()
        leader = await c.wait_leader()
        r = leader.router.get(1)
        assert r is not None
        last = r.raw_node.raft.raft_log.last_index()
        voter = await follower_peer(c)
        got = await change(c, [PeerChange(REMOVE, voter)])
        assert isinstance(got, Internal) and "demote" in got.message
        got = await change(c, [PeerChange(ADD_LEARNER, r.peer)])
        assert isinstance(got, Internal) and "transfer leadership" in got.message
        got = await change(c, [PeerChange(ADD_LEARNER, Peer(300, voter.store_id))])
        assert isinstance(got, Internal)  # that store already holds a peer
        got = await leader.steps.change_peers(1, RegionEpoch(0, 1), [PeerChange(ADD_LEARNER, Peer(301, 4))])
        assert isinstance(got, EpochNotMatch)
        follower = c.store(voter.store_id)
        got = await follower.steps.change_peers(1, r.region.epoch, [PeerChange(ADD_LEARNER, Peer(302, 4))])
        assert isinstance(got, NotLeader)
        assert r.raw_node.raft.raft_log.last_index() == last
        nursery.cancel_scope.cancel()


async def test_only_one_membership_change_is_pending_at_a_time(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery, n=5)
        await c.start()
        leader = await c.wait_leader()
        epoch = region_on(leader).epoch  # type: ignore[union-attr]
        answers: list[Answer] = []

        async def add(peer: Peer) -> None:
            answers.append(await leader.steps.change_peers(1, epoch, [PeerChange(ADD_LEARNER, peer)]))

        # Both reach the loop in the same round: the second sees the first pending.
        async with trio.open_nursery() as two:
            two.start_soon(add, Peer(401, 4, PeerRole.Learner))
            two.start_soon(add, Peer(402, 5, PeerRole.Learner))
        assert WriteOk() in answers
        busy = [a for a in answers if a != WriteOk()]
        assert len(busy) == 1 and isinstance(busy[0], ServerIsBusy | EpochNotMatch)
        await wait_until(lambda: converged(c, [1, 2, 3], RegionEpoch(2, 1)))
        nursery.cancel_scope.cancel()


async def test_a_peer_that_applies_its_own_removal_is_tombstoned(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Demote then remove a follower: it tombstones the region in the batch of that apply,
    refuses requests, stays a tombstone across a restart, and the two others go on."""
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        assert (await c.kv(leader, Put(b"t", b"1"))).result == WriteOk()
        victim = await follower_peer(c)
        assert await change(c, [PeerChange(ADD_LEARNER, victim)]) == WriteOk()
        learner = Peer(victim.id, victim.store_id, PeerRole.Learner)
        assert await change(c, [PeerChange(REMOVE, learner)]) == WriteOk()
        s = c.store(victim.store_id)
        await wait_until(lambda: s.router.get(1) is None)
        tomb = s.router.tombstones[1]
        assert tomb.region.peer_by_id(victim.id) is None and tomb.region.epoch == RegionEpoch(3, 1)
        got = (await c.kv(s, Get(b"t"), epoch=RegionEpoch(3, 1))).result
        assert got == RegionNotFound(1)
        leader = await c.wait_leader()
        assert (await c.kv(leader, Put(b"t", b"2"))).result == WriteOk()
        from multiraft.storage import recover

        (rec,) = recover(s.engine)
        assert rec.tombstone and rec.raft_state.last_index == 0
        await c.stop_store(victim.store_id)
        s = await c.start_store(victim.store_id)
        assert s.router.get(1) is None and 1 in s.router.tombstones
        nursery.cancel_scope.cancel()


async def test_steps_in_heartbeat_replies_are_executed_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Placement resends the current step with every heartbeat until it sees it done."""
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        target = 2 if leader.store_id != 2 else 3
        region = region_on(leader)
        assert region is not None
        step = TransferLeader(region.epoch, leader.store_id, target)
        sent: list[int] = []
        original = c.placement.region_heartbeat

        async def heartbeat(region: Region, led: Peer, term: int, **kw: object) -> RegionHeartbeatReply:
            await original(region, led, term, **kw)  # type: ignore[arg-type]
            if step.is_finished(region, led):
                return RegionHeartbeatReply()
            sent.append(led.store_id)
            return RegionHeartbeatReply(step)

        c.placement.region_heartbeat = heartbeat  # type: ignore[method-assign]
        await wait_until(lambda: c.leader(1) is c.store(target))
        assert sent and set(sent) == {leader.store_id}
        nursery.cancel_scope.cancel()


async def test_a_conf_change_racing_a_leader_change_leaves_every_store_consistent(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery, n=4)
        await c.start()
        leader = await c.wait_leader()
        r = leader.router.get(1)
        assert r is not None
        other = await follower_peer(c)
        answer: list[Answer] = []

        async def add() -> None:
            answer.append(await leader.steps.change_peers(
                1, r.region.epoch, [PeerChange(ADD_LEARNER, Peer(501, 4, PeerRole.Learner))]))

        async with trio.open_nursery() as race:
            race.start_soon(add)
            race.start_soon(leader.steps.transfer_leader, 1, other.store_id)
        (got,) = answer
        assert got == WriteOk() or isinstance(got, StaleCommand | NotLeader | Timeout)
        # Whatever happened, the stores agree, and a retry from the current leader settles it.
        for _ in range(5):
            g = region_on(await c.wait_leader())
            assert g is not None
            if g.peer_by_id(501) is not None:
                break
            await change(c, [PeerChange(ADD_LEARNER, Peer(501, 4, PeerRole.Learner))])
        await wait_until(lambda: converged(c, [1, 2, 3, 4], RegionEpoch(2, 1)))
        nursery.cancel_scope.cancel()


async def test_a_change_the_rules_refuse_that_reaches_the_log_is_skipped_everywhere(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Propose around the checks (as a buggy or older leader could): removing a voter outright.
    Every replica refuses it at apply alike: region, conf_ver and Raft's voters unchanged."""
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery)
        await c.start()
        leader = await c.wait_leader()
        lr = leader.router.get(1)
        assert lr is not None
        victim = await follower_peer(c)
        cmd = RaftCmd(CmdHeader(1, lr.region.epoch),
                      admin=ChangePeerV2([ChangePeer(REMOVE, victim)]))  # fmt: skip
        cc = to_conf_change_v2([PeerChange(REMOVE, victim)])
        lr.raw_node.propose_conf_change(encode_cmd(cmd), cc)
        index = lr.raw_node.raft.raft_log.last_index()
        leader.loop.dirty[1] = lr
        await wait_until(lambda: all(
            (r := s.router.get(1)) is not None and r.applied_index >= index
            for s in c.net.stores.values()))  # fmt: skip
        for s in c.net.stores.values():
            r = s.router.get(1)
            assert r is not None
            assert r.region.epoch == RegionEpoch(1, 1) and r.region.peer_by_id(victim.id) == victim
            assert sorted(r.raw_node.raft.prs().conf().voters.ids()) == sorted(
                p.id for p in r.region.peers
            )
        assert (await c.kv(leader, Put(b"still", b"fine"))).result == WriteOk()
        nursery.cancel_scope.cancel()


async def test_a_demoting_leader_asked_to_leave_joint_hands_over_first(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """A leader elected while demoting (the old leader died inside a move) may not leave the
    joint state itself: given the JointLeave step it hands leadership to a staying voter,
    which leaves when it gets the same step."""
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery, n=4)
        await c.start()
        new = Peer(601, 4, PeerRole.Learner)
        assert await change(c, [PeerChange(ADD_LEARNER, new)]) == WriteOk()
        old = await follower_peer(c)
        assert await change(c, [PeerChange(ADD_VOTER, new), PeerChange(ADD_LEARNER, old)]) == WriteOk()
        await wait_until(lambda: converged(c, [1, 2, 3, 4], RegionEpoch(4, 1)))
        leader = await c.wait_leader()
        lr = leader.router.get(1)
        assert lr is not None
        lr.raw_node.transfer_leader(old.id)  # around the store's voter-only check
        leader.loop.dirty[1] = lr
        await wait_until(lambda: c.leader(1) is c.store(old.store_id))
        demoting = c.store(old.store_id)
        region = region_on(demoting)
        assert region is not None
        step = JointLeave(region.epoch, (), ())
        assert await demoting.steps.execute(1, step) == WriteOk()  # the hand-over
        await wait_until(lambda: c.leader(1) is not None and c.leader(1) is not demoting)
        assert await c.leader(1).steps.execute(1, step) == WriteOk()  # type: ignore[union-attr]
        await wait_until(lambda: converged(c, [1, 2, 3, 4], RegionEpoch(6, 1)))
        roles = {p.store_id: p.role for p in region_on(c.store(4)).peers}  # type: ignore[union-attr]
        assert roles[4] == PeerRole.Voter and roles[old.store_id] == PeerRole.Learner
        nursery.cancel_scope.cancel()


async def test_a_conf_change_made_for_an_old_conf_ver_is_skipped_at_apply(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The epoch is checked again at apply (multiraft-design §4.1): a change proposed around
    the propose-time check with a stale conf_ver changes nothing on any replica."""
    async with trio.open_nursery() as nursery:
        c = Cluster(tmp_path, nursery, n=4)
        await c.start()
        leader = await c.wait_leader()
        lr = leader.router.get(1)
        assert lr is not None
        learner = Peer(701, 4, PeerRole.Learner)
        stale = RegionEpoch(lr.region.epoch.conf_ver - 1, lr.region.epoch.version)
        cmd = RaftCmd(CmdHeader(1, stale), admin=ChangePeerV2([ChangePeer(ADD_LEARNER, learner)]))
        lr.raw_node.propose_conf_change(
            encode_cmd(cmd), to_conf_change_v2([PeerChange(ADD_LEARNER, learner)])
        )
        index = lr.raw_node.raft.raft_log.last_index()
        leader.loop.dirty[1] = lr
        await wait_until(lambda: all(
            (r := c.store(s).router.get(1)) is not None and r.applied_index >= index
            for s in (1, 2, 3)))  # fmt: skip
        for s in (1, 2, 3):
            r = c.store(s).router.get(1)
            assert r is not None and r.region.epoch == RegionEpoch(1, 1)
            assert r.region.peer_by_id(701) is None
            assert 701 not in r.raw_node.raft.prs().conf().learners
        nursery.cancel_scope.cancel()
