"""How replicas begin and end outside peer creation: bootstrap regions, snapshot installs,
and the destruction of a peer that applied its own removal.

Theory of operation
-------------------
* **Bootstrap** (the cluster's first region, handed out by placement): the region's
  ``RegionLocalState{Normal}``, raft state (term 5, commit 5, last index 5), apply state
  (applied 5, truncated 5/5) and conf state (its voters) are staged in the round's batch
  (``RaftStorage.apply_snapshot_meta`` at ``RAFT_INIT_LOG_INDEX/TERM``), then the replica is
  created. Placement repeats the region until it hears of it, so a region this store
  already knows (live, tombstoned or dormant) is ignored.
* **Snapshot install**: when a replica's Ready carries a snapshot, the stream it received
  and staged in LMDB (``ReceivedSnapshot.staged``) is installed with
  :func:`multiraft.storage.snapshot.apply_staged`, which commits the Applying mark, the data
  (read back from staging a chunk at a time) and the Normal mark in its own transactions,
  through the store's writer slot. Only then is the rest of that Ready staged. The replica
  neither serves nor takes messages while Applying; afterwards it has the snapshot's region,
  applied index and term, and the router indexes its range.
* **Destroy**: a replica that applied a conf change removing itself is tombstoned in the
  same batch as that apply (``delete_raft_meta`` + ``RegionLocalState{Tombstone, final
  region}``); after the commit it leaves the router (its tombstone stays) and everything it
  held is answered RegionNotFound. A *stale* replica (removed while it could not hear of
  it) is destroyed the same way by the ready loop, in the batch of the round that learned
  it is stale: a tombstone notice from a member of a newer configuration, or a message
  for a larger peer id of this store (multiraft-design §2.3). The tombstone of a replica
  that never became initialized lists its own peer, so peer creation keeps refusing that
  peer id (and smaller ones) for good.
"""

from __future__ import annotations

import logging

from multiraft.metrics import StoreServerMetrics
from multiraft.raft import ConfState, Ready, SnapshotMetadata
from multiraft.storage import snapshot as snapshot_mod
from multiraft.storage.engine import Engine
from multiraft.storage.raft_storage import RaftStorage, SnapshotProducer
from multiraft.storage.write_batch import StorageWriter, WriteBatch
from multiraft.store.cleanup import RangeCleaner
from multiraft.store.replica import RaftSettings, Replica
from multiraft.store.router import Router
from multiraft.wire.messages import RegionNotFound
from regions.local_state import RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM, PeerState, RegionLocalState
from regions.region import Region

__all__ = [
    "StoreFatal",
    "bootstrap_replica",
    "fail_replica",
    "finish_destroy",
    "install_snapshot",
    "stage_destroy",
]

log = logging.getLogger(__name__)


class StoreFatal(Exception):
    """The store cannot go on safely (a Raft invariant broke); it must stop."""


def bootstrap_replica(
    region: Region,
    *,
    store_id: int,
    engine: Engine,
    router: Router,
    settings: RaftSettings,
    producer: SnapshotProducer | None,
    batch: WriteBatch,
) -> Replica | None:
    """Create this store's replica of a bootstrap region; None if it is not for us or known."""
    rid = region.id
    if rid in router.replicas or rid in router.tombstones or rid in router.dormant:
        return None  # idempotent: placement repeats it until our heartbeat reports the region
    own = region.peer_on_store(store_id)
    if own is None or router.overlapping(region.start_key, region.end_key):
        log.warning("store %d: ignoring bootstrap region %r", store_id, region)
        return None
    storage = RaftStorage(engine, rid, snapshot_producer=producer)
    cs = ConfState(voters=region.voter_ids(), learners=region.learner_ids())
    storage.apply_snapshot_meta(
        SnapshotMetadata(cs, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM), batch
    )
    batch.put_region_state(rid, RegionLocalState(PeerState.Normal, region))
    r = Replica(own, region, storage, settings)
    router.add(r)
    log.info("store %d: bootstrapped region %d as peer %d", store_id, rid, own.id)
    return r


async def install_snapshot(
    r: Replica,
    rd: Ready,
    *,
    engine: Engine,
    writer: StorageWriter,
    router: Router,
    metrics: StoreServerMetrics | None,
) -> None:
    """Install the snapshot ``rd`` carries from the stream ``r`` received and staged.

    Raises:
        StoreFatal: Raft accepted a snapshot whose data this replica does not have.
        SnapshotError: the staged stream is gone or was used already, or the region is
            Applying (the store must stop: Raft has already moved to the snapshot).
    """
    snap = r.pending_snapshot
    md = rd.snapshot.metadata
    if snap is None or (snap.index, snap.term) != (md.index, md.term):
        raise StoreFatal(
            f"region {r.region_id}: Raft accepted snapshot {md.index} without its data"
        )
    r.peer_state = PeerState.Applying
    ok = False
    try:
        await writer.run(snapshot_mod.apply_staged, engine, snap.staged)
        ok = True
    finally:
        if metrics is not None:
            metrics.raft.snapshots_applied.labels("ok" if ok else "failed").inc()
            metrics.raft.snapshot_applied_bytes.inc(snap.staged.total_bytes)
    r.storage.reload()
    r.peer_state = PeerState.Normal
    r.set_region(snap.region)
    r.applied_index = snap.index
    r.applied_term = snap.term
    router.update_range(r)
    log.info("region %d: applied snapshot at %d", r.region_id, snap.index)


def _final_region(r: Replica) -> Region:
    """The region a tombstone of ``r`` records: as applied, plus its own peer if uninitialized."""
    region = r.region
    if r.initialized:
        return region
    return Region(region.id, region.start_key, region.end_key, region.epoch, [r.peer])


def stage_destroy(r: Replica, batch: WriteBatch) -> None:
    """Tombstone ``r`` in ``batch``: it applied its own removal (same batch as that apply),
    or the ready loop learned it is stale (same batch as the round that learned it)."""
    batch.delete_raft_meta(r.region_id)
    batch.put_region_state(r.region_id, RegionLocalState(PeerState.Tombstone, _final_region(r)))
    r.destroyed = True


def finish_destroy(r: Replica, router: Router, cleaner: RangeCleaner | None = None) -> None:
    """After the tombstone committed: forget the replica, fail what it held, and have its
    data range deleted in the background (TiKV deletes it asynchronously too)."""
    router.remove(r.region_id, RegionLocalState(PeerState.Tombstone, _final_region(r)))
    if cleaner is not None and r.initialized:  # an uninitialized peer has no data
        cleaner.schedule(r.region_id, r.region.start_key, r.region.end_key)
    fail_replica(r, RegionNotFound(r.region_id))
    log.info("region %d: peer %d removed and tombstoned", r.region_id, r.peer.id)


def fail_replica(r: Replica, err: RegionNotFound) -> None:
    """Answer everything ``r`` holds with ``err`` (the replica is gone)."""
    for p in r.proposals.take_all():
        p.waiter.set(err)
    for w in r.pending_writes:
        w.waiter.set(err)
    r.pending_writes = []
    for read in r.pending_reads:
        read.waiter.set(err)
    r.pending_reads = []
    for b in r.read_batches:
        for read in b.reads:
            read.waiter.set(err)
    r.read_batches.clear()
