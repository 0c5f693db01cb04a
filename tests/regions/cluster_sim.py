"""A tiny simulated cluster for the scheduling tests: operators applied instantly.

:meth:`SimCluster.run` drives an operator the way the placement service and
the stores would: before each step it asks ``Operator.check`` (which must
return exactly that step), then applies the step to the region descriptor
with the same pure functions a store uses (``apply_conf_change``, a leader
move, ``apply_batch_split``) and checks the safety rules on the way: the
leader is never demoted or removed, leadership only goes to a voter. At the
end the operator must report success.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from regions.conf_change import apply_conf_change
from regions.region import Peer, PeerRole, Region, RegionEpoch
from regions.scheduling.cluster import ClusterSnapshot, RegionView, StoreState, StoreView
from regions.scheduling.operators import (
    Operator,
    OperatorStatus,
    SplitRegion,
    Step,
    TransferLeader,
)
from regions.split import apply_batch_split


@dataclass
class SimCluster:
    stores: dict[int, StoreView] = field(default_factory=dict)
    regions: dict[int, Region] = field(default_factory=dict)
    #: region id -> store id of its leader
    leaders: dict[int, int] = field(default_factory=dict)
    sizes: dict[int, int] = field(default_factory=dict)
    #: region id -> {peer id: down seconds}
    down_peers: dict[int, dict[int, float]] = field(default_factory=dict)
    next_id: int = 1000

    def alloc_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def add_store(self, sid: int, state: StoreState = StoreState.UP, silent: float = 0.0) -> None:
        self.stores[sid] = StoreView(sid, state, silent)

    def add_region(
        self,
        rid: int,
        store_ids: Iterable[int],
        *,
        leader: int | None = None,
        size: int = 1,
        start: bytes = b"",
        end: bytes = b"",
        learners: Iterable[int] = (),
    ) -> Region:
        peers = [Peer(self.alloc_id(), s) for s in store_ids]
        peers += [Peer(self.alloc_id(), s, PeerRole.Learner) for s in learners]
        region = Region(rid, start, end, RegionEpoch(1, 1), peers)
        self.regions[rid] = region
        self.leaders[rid] = leader if leader is not None else peers[0].store_id
        self.sizes[rid] = size
        return region

    def leader_peer(self, rid: int) -> Peer | None:
        return self.regions[rid].peer_on_store(self.leaders[rid])

    def view(self, rid: int) -> RegionView:
        return RegionView(
            self.regions[rid],
            self.leader_peer(rid),
            approximate_size=self.sizes[rid],
            down_peers=dict(self.down_peers.get(rid, {})),
        )

    def snapshot(self) -> ClusterSnapshot:
        return ClusterSnapshot(self.stores.values(), (self.view(rid) for rid in self.regions))

    def run(self, op: Operator) -> None:
        """Apply every step of ``op`` in order, checking the operator and the safety rules."""
        rid = op.region_id
        for expected in op.steps:
            step = op.check(self.regions[rid], self.leader_peer(rid))
            assert step is expected, f"{op.describe()}: check gave {step}, wanted {expected}"
            assert step is not None
            assert op.check(self.regions[rid], self.leader_peer(rid)) is step  # idempotent
            self.apply_step(rid, step)
        assert op.check(self.regions[rid], self.leader_peer(rid)) is None
        assert op.status == OperatorStatus.SUCCESS, op.describe()

    def apply_step(self, rid: int, step: Step) -> None:
        region = self.regions[rid]
        if isinstance(step, TransferLeader):
            target = region.peer_on_store(step.to_store)
            assert target is not None and target.role in (PeerRole.Voter, PeerRole.IncomingVoter)
            assert self.leaders[rid] == step.from_store
            self.leaders[rid] = step.to_store
        elif isinstance(step, SplitRegion):
            keys = list(step.keys)
            ids = [self.alloc_id() for _ in keys]
            peer_ids = [[self.alloc_id() for _ in region.peers] for _ in keys]
            for r in apply_batch_split(region, keys, ids, peer_ids):
                self.regions[r.id] = r
                self.leaders.setdefault(r.id, self.leaders[rid])
                self.sizes.setdefault(r.id, self.sizes[rid])
        else:
            changes = step.conf_changes()
            assert changes is not None
            new = apply_conf_change(region, changes)
            leader = new.peer_on_store(self.leaders[rid])
            assert leader is not None and leader.role in (PeerRole.Voter, PeerRole.IncomingVoter), (
                f"step {step} demotes or removes the leader"
            )
            self.regions[rid] = new

    def voter_stores(self, rid: int) -> set[int]:
        return {p.store_id for p in self.regions[rid].peers if p.role == PeerRole.Voter}
