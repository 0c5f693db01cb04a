"""After a split applied: the new regions' replicas, created in the same round and batch.

Theory of operation
-------------------
``admin_apply`` computes the regions of a BatchSplit and stages the parent's new
descriptor; :class:`SplitInstaller` (the ready loop's ``on_split`` hook) then,
before the parent's next entry is applied (multiraft-design §4.2 step 5,
§11.3):

1. re-indexes the parent's (smaller) range in the router;
2. for each new region, stages its ``RegionLocalState{Normal}`` and initial raft
   state (log at index/term 5, applied 5, the region's voters and learners) in
   the round's batch — atomically with the parent's apply — and creates an
   initialized replica, registered in the router;
3. if the parent leads, has the new replica campaign at once, so the new
   regions elect their leaders on the stores that led the parent;
4. replays the first messages that arrived for the new region before it
   existed here (:class:`FirstMessageStash`).

A new region whose replica should *not* be created from the split is skipped,
never overwritten (TiKV ``pending_create_peers``): one already initialized here
(a snapshot got there first), one tombstoned here (its peer on this store was
removed after the split), or an uninitialized replica with another peer id. The
one replica that is replaced is an uninitialized one with the split's peer id
(made by a vote from a store that split earlier): its storage is kept, so the
vote it cast survives and the initial state only raises its term to 5. A
skipped region still works: its leader finds this store's peer missing and
catches it up with a snapshot.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

from multiraft.raft import SnapshotMetadata
from multiraft.storage.engine import Engine
from multiraft.storage.raft_storage import RaftStorage, SnapshotProducer
from multiraft.storage.write_batch import WriteBatch
from multiraft.store.replica import RaftSettings, Replica
from multiraft.store.router import Router
from multiraft.wire.messages import RaftEnvelope
from regions.conf_change import to_conf_state
from regions.local_state import RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM, PeerState, RegionLocalState
from regions.region import Region

__all__ = ["FirstMessageStash", "SplitInstaller"]

log = logging.getLogger(__name__)


class FirstMessageStash:
    """The latest initial message for each region that overlaps a local region not yet split.

    Bounded (oldest regions dropped first): losing a stashed message only delays an
    election, Raft retries.
    """

    def __init__(self, capacity: int = 1024) -> None:
        self._capacity = capacity
        self._by_region: OrderedDict[int, RaftEnvelope] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_region)

    def put(self, env: RaftEnvelope) -> None:
        self._by_region.pop(env.region_id, None)
        self._by_region[env.region_id] = env
        while len(self._by_region) > self._capacity:
            self._by_region.popitem(last=False)

    def take(self, region_id: int) -> RaftEnvelope | None:
        return self._by_region.pop(region_id, None)


class SplitInstaller:
    """Creates the replicas of a split's new regions (see the module docstring)."""

    def __init__(
        self,
        *,
        store_id: int,
        engine: Engine,
        router: Router,
        settings: RaftSettings,
        producer: SnapshotProducer | None,
    ) -> None:
        self.store_id = store_id
        self.engine = engine
        self.router = router
        self.settings = settings
        self.producer = producer
        self.stash = FirstMessageStash()
        #: First messages replayed into regions created by a split (tests, logs).
        self.replayed = 0

    def install(
        self, parent: Replica, new_regions: list[Region], batch: WriteBatch
    ) -> tuple[list[Replica], list[Region]]:
        """Create the new regions' replicas; returns them and the regions skipped."""
        router = self.router
        router.update_range(parent)
        share = len(new_regions) + 1
        created: list[Replica] = []
        skipped: list[Region] = []
        for region in new_regions:
            r = self._create(region, batch)
            if r is None:
                skipped.append(region)
                continue
            r.approx_size = parent.approx_size // share
            r.approx_keys = parent.approx_keys // share
            if parent.is_leader():
                r.raw_node.campaign()
            created.append(r)
        parent.approx_size //= share
        parent.approx_keys //= share
        parent.size_checked = 0
        return created, skipped

    def _create(self, region: Region, batch: WriteBatch) -> Replica | None:
        router = self.router
        own = region.peer_on_store(self.store_id)
        rid = region.id
        if own is None:
            return None
        existing = router.get(rid)
        storage: RaftStorage | None = None
        if existing is not None:
            if existing.initialized or existing.peer.id != own.id or existing.destroyed:
                log.info("store %d: split skips region %d: peer %d is already here",
                         self.store_id, rid, existing.peer.id)  # fmt: skip
                return None
            storage = existing.storage  # keep the vote it may have cast
        elif rid in router.tombstones or rid in router.dormant:
            log.info("store %d: split skips region %d: it was removed from this store",
                     self.store_id, rid)  # fmt: skip
            return None
        if router.overlapping(region.start_key, region.end_key, exclude=rid):
            log.warning("store %d: split skips region %d: its range overlaps another region here",
                        self.store_id, rid)  # fmt: skip
            return None
        if existing is not None:
            # The old object may still sit in this round's dirty set or Readies: it must
            # never touch the storage it hands over again, nor be tombstoned after the commit.
            existing.destroyed = True
            existing.replaced_by_split = True
            router.remove(rid)
        if storage is None:
            storage = RaftStorage(self.engine, rid, snapshot_producer=self.producer)
        storage.apply_snapshot_meta(
            SnapshotMetadata(to_conf_state(region), RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM), batch
        )
        batch.put_region_state(rid, RegionLocalState(PeerState.Normal, region))
        r = Replica(own, region, storage, self.settings)
        router.add(r)
        log.info("store %d: created peer %d of region %d by split", self.store_id, own.id, rid)
        return r
