"""Peer creation rules (multiraft-design §2.2), the router's range index, and the proposal
queue's exactly-once bookkeeping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from multiraft.raft import Message, MessageType
from multiraft.storage import Engine, RaftStorage, WriteBatch, recover
from multiraft.store.peer_create import check_create, create_replica, is_initial_msg
from multiraft.store.proposals import Proposal, ProposalQueue, Waiter
from multiraft.store.replica import RaftSettings, Replica
from multiraft.store.router import Router
from multiraft.wire.command_codec import CmdHeader, RaftCmd
from multiraft.wire.messages import RaftEnvelope
from regions import PeerState, RegionLocalState
from regions.region import Peer, Region, RegionEpoch

STORE = 2
TO = Peer(52, STORE)
EPOCH = RegionEpoch(2, 3)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "db", sync=False) as eng:
        yield eng


def env(
    t: MessageType = MessageType.MsgRequestVote,
    *,
    region_id: int = 5,
    to: Peer = TO,
    epoch: RegionEpoch = EPOCH,
    commit: int = 0,
    start: bytes = b"",
    end: bytes = b"",
    tombstone: bool = False,
) -> RaftEnvelope:
    m = Message(msg_type=t, to=to.id, from_=51, term=7, commit=commit)
    return RaftEnvelope(region_id, Peer(51, 1), to, epoch, m, tombstone, start, end)


def replica(engine: Engine, region: Region) -> Replica:
    return Replica(region.peers[0], region, RaftStorage(engine, region.id), RaftSettings())


def test_initial_messages() -> None:
    assert is_initial_msg(Message(msg_type=MessageType.MsgRequestVote))
    assert is_initial_msg(Message(msg_type=MessageType.MsgRequestPreVote))
    assert is_initial_msg(Message(msg_type=MessageType.MsgHeartbeat, commit=0))
    assert not is_initial_msg(Message(msg_type=MessageType.MsgHeartbeat, commit=3))
    assert not is_initial_msg(Message(msg_type=MessageType.MsgAppend))
    assert not is_initial_msg(Message(msg_type=MessageType.MsgSnapshot))


def test_check_create_rules(engine: Engine) -> None:
    router = Router()
    ok = check_create
    assert ok(env(), store_id=STORE, router=router) is None
    assert ok(env(MessageType.MsgHeartbeat), store_id=STORE, router=router) is None
    assert (
        ok(env(MessageType.MsgHeartbeat, commit=9), store_id=STORE, router=router)
        == "region_not_found"
    )
    assert ok(env(MessageType.MsgAppend), store_id=STORE, router=router) == "region_not_found"
    assert ok(env(to=Peer(52, 3)), store_id=STORE, router=router) == "mismatch_store"
    assert ok(env(tombstone=True), store_id=STORE, router=router) == "region_not_found"
    # An initialized region [a, m) here: a message for a region overlapping it is refused.
    router.add(replica(engine, Region(9, b"a", b"m", RegionEpoch(1, 1), [Peer(91, STORE)])))
    assert ok(env(start=b"k", end=b"z"), store_id=STORE, router=router) == "region_overlap"
    assert ok(env(start=b"m", end=b"z"), store_id=STORE, router=router) is None


def test_tombstone_refuses_stale_epochs_and_old_peer_ids() -> None:
    router = Router()
    final = Region(5, b"", b"", RegionEpoch(2, 3), [Peer(51, 1), Peer(52, STORE)])
    router.tombstones[5] = RegionLocalState(PeerState.Tombstone, final)
    assert (
        check_create(env(epoch=RegionEpoch(2, 3)), store_id=STORE, router=router) == "stale_epoch"
    )
    assert (
        check_create(env(epoch=RegionEpoch(1, 9)), store_id=STORE, router=router) == "stale_epoch"
    )
    got = check_create(env(epoch=RegionEpoch(3, 3)), store_id=STORE, router=router)
    assert got == "region_tombstone"  # a newer epoch, but peer id 52 is the removed one
    assert check_create(env(epoch=RegionEpoch(3, 3), to=Peer(60, STORE)), store_id=STORE,
                        router=router) is None  # fmt: skip


def test_created_replica_is_uninitialized_and_its_vote_survives(engine: Engine) -> None:
    router = Router()
    batch = WriteBatch()
    r = create_replica(env(), engine=engine, settings=RaftSettings(), router=router, batch=batch,
                       producer=None)  # fmt: skip
    assert not r.initialized and r.peer == Peer(52, STORE) and router.get(5) is r
    assert r.raw_node.raft.prs().conf().to_conf_state().voters == []
    # It votes (the vote goes to the same batch as its region state)...
    r.raw_node.step(env().message)
    rd = r.raw_node.ready()
    r.storage.stage_ready(rd.entries, rd.hs, batch)
    batch.commit(engine)
    assert [m.msg_type for m in rd.persisted_messages] == [MessageType.MsgRequestVoteResponse]
    # ...and after a restart it is found dormant with that vote.
    (rec,) = recover(engine)
    assert not rec.initialized and rec.hard_state.vote == 51 and rec.hard_state.term == 7
    router2 = Router()
    router2.dormant[5] = rec
    r2 = create_replica(env(MessageType.MsgHeartbeat), engine=engine, settings=RaftSettings(),
                        router=router2, batch=WriteBatch(), producer=None)  # fmt: skip
    assert r2.raw_node.raft.vote == 51 and 5 not in router2.dormant


def test_router_ranges(engine: Engine) -> None:
    router = Router()
    a = replica(engine, Region(1, b"", b"g", RegionEpoch(), [Peer(11, 1)]))
    b = replica(engine, Region(2, b"g", b"p", RegionEpoch(), [Peer(21, 1)]))
    c = replica(engine, Region(3, b"p", b"", RegionEpoch(), [Peer(31, 1)]))
    for r in (c, a, b):
        router.add(r)
    assert router.overlapping(b"", b"") == [1, 2, 3]
    assert router.overlapping(b"h", b"i") == [2]
    assert router.overlapping(b"f", b"h") == [1, 2]
    assert router.overlapping(b"g", b"p", exclude=2) == []
    assert router.region_at(b"zz") is c and router.region_at(b"g") is b
    with pytest.raises(ValueError, match="overlaps"):
        router.add(replica(engine, Region(4, b"o", b"q", RegionEpoch(), [Peer(41, 1)])))
    router.remove(2)
    assert router.overlapping(b"h", b"i") == [] and router.region_at(b"h") is None


def _p(index: int, term: int) -> Proposal:
    return Proposal(index, term, RaftCmd(CmdHeader(1, RegionEpoch())), Waiter(), 0.0)


def test_proposal_queue_matches_and_passes_over() -> None:
    q = ProposalQueue()
    for i, t in ((6, 2), (7, 2), (8, 2), (9, 3)):
        q.push(_p(i, t))
    with pytest.raises(ValueError):
        q.push(_p(9, 3))
    assert q.pop_applied(5, 2) == (None, [])
    match, stale = q.pop_applied(7, 2)
    assert match is not None and match.index == 7 and [p.index for p in stale] == [6]
    match, stale = q.pop_applied(8, 3)  # entry 8 was rewritten in term 3
    assert match is None and [p.index for p in stale] == [8]
    assert [p.index for p in q.take_older_than(4)] == [9] and len(q) == 0


async def test_waiter_is_answered_once(autojump_clock: trio.testing.MockClock) -> None:
    w: Waiter[int] = Waiter()
    assert w.set(1) is True
    assert w.set(2) is False
    assert await w.wait() == 1
    late: Waiter[int] = Waiter()
    late.abandon()
    assert late.set(3) is False and late.answered
    with trio.move_on_after(0.01):
        await late.wait()
        raise AssertionError("an abandoned waiter never completes")
