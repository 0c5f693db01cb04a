"""SplitInstaller in isolation: which new regions a split creates, replaces or skips here."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from multiraft.raft import HardState
from multiraft.storage import Engine, WriteBatch
from multiraft.storage.raft_storage import RaftStorage
from multiraft.store.replica import RaftSettings, Replica
from multiraft.store.router import Router
from multiraft.store.split_exec import SplitInstaller
from regions.local_state import PeerState, RegionLocalState
from regions.region import Peer, Region, RegionEpoch
from regions.split import apply_batch_split

STORE = 2
PARENT = Region(1, b"", b"", RegionEpoch(1, 1), [Peer(11, 1), Peer(12, 2), Peer(13, 3)])


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    with Engine.open(tmp_path / "db", sync=False) as eng:
        yield eng


def setup(engine: Engine) -> tuple[Router, SplitInstaller, Replica, list[Region]]:
    router = Router()
    parent = Replica(PARENT.peers[1], PARENT, RaftStorage(engine, 1), RaftSettings())
    router.add(parent)
    regions = apply_batch_split(PARENT, [b"m"], [7], [[71, 72, 73]])
    new = [g for g in regions if g.id == 7]
    parent.set_region(next(g for g in regions if g.id == 1))
    installer = SplitInstaller(store_id=STORE, engine=engine, router=router,
                               settings=RaftSettings(), producer=None)  # fmt: skip
    return router, installer, parent, new


def uninitialized(engine: Engine, peer: Peer, term: int, vote: int) -> Replica:
    storage = RaftStorage(engine, 7)
    batch = WriteBatch()
    storage.set_hard_state(HardState(term, vote, 0), batch)
    batch.commit(engine)
    return Replica(peer, Region(7, epoch=RegionEpoch(0, 0)), storage, RaftSettings())


def test_a_split_creates_the_new_region_initialized(engine: Engine) -> None:
    router, installer, parent, new = setup(engine)
    created, skipped = installer.install(parent, new, WriteBatch())
    assert skipped == [] and [r.region_id for r in created] == [7]
    r = router.get(7)
    assert r is created[0] and r.initialized and r.peer == Peer(72, STORE)
    assert r.storage.hard_state().term == 5 and r.applied_index == 5
    assert router.region_at(b"a") is r and router.region_at(b"z") is parent


def test_an_uninitialized_peer_with_the_same_id_is_replaced_and_keeps_its_vote(
    engine: Engine,
) -> None:
    router, installer, parent, new = setup(engine)
    old = uninitialized(engine, Peer(72, STORE), term=9, vote=71)
    router.add(old)
    (created,), _ = installer.install(parent, new, WriteBatch())
    # The old object is out of the loop for good, without a tombstone.
    assert old.destroyed and old.replaced_by_split and 7 not in router.tombstones
    assert router.get(7) is created and created.storage is old.storage
    hs = created.storage.hard_state()
    assert (hs.term, hs.vote, hs.commit) == (9, 71, 5)  # the vote it cast stands


@pytest.mark.parametrize("case", ["other_peer_id", "tombstone"])
def test_a_region_this_store_should_not_create_from_the_split_is_skipped(
    engine: Engine, case: str
) -> None:
    router, installer, parent, new = setup(engine)
    if case == "other_peer_id":
        router.add(uninitialized(engine, Peer(99, STORE), term=9, vote=0))
    else:
        router.tombstones[7] = RegionLocalState(PeerState.Tombstone, new[0])
    created, skipped = installer.install(parent, new, WriteBatch())
    assert created == [] and [g.id for g in skipped] == [7]
    r = router.get(7)
    assert r is None or not r.initialized
