"""Store scores, the influence of operators on them, and when a move is worth it.

Scores (PD ``pkg/core/store.go``, simplified):

* **leader score** = leader count (policy ``count``, PD's default) or leader
  size (policy ``size``), divided by the store's leader weight;
* **region score** = region count or region size (the sum of the approximate
  sizes of the regions with a replica there, learners included), divided by
  the store's region weight. PD's v2 score also weighs free disk space; this
  cluster does not report capacity, so size stands in for it.

**Influence.** An operator that has not finished will still change the
statistics: each remaining step adds its delta (a new learner +1 region and
+size on its store, a removal -1 and -size, a leader transfer moves one leader
and its size). Schedulers add the influence of running operators, and of those
they have just made, before choosing the next move, so that a pass does not
pile moves onto the same store (PD ``schedulers/utils.go``).

**When to move** an amount ``w`` (1 for count, the region's size for size)
from a store of score ``s`` (weight ``ws``) to one of score ``t`` (``wt``)::

    s - t > w * (1/ws + 1/wt) / 2 + tolerance

This is exactly the condition under which the move strictly lowers the
potential ``sum(value_i**2 / weight_i)`` over stores (with equal weights:
``s - t > w``). Every move a scheduler makes lowers that potential, and there
are finitely many placements, so repeated balancing terminates; with counts
and equal weights it stops only when no allowed move can narrow a gap of 2 or
more.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from enum import StrEnum

from regions.scheduling.cluster import ClusterSnapshot, StoreStats, StoreView
from regions.scheduling.operators import Operator

__all__ = [
    "BalancePolicy",
    "SchedulePass",
    "add_influence",
    "leader_score",
    "potential",
    "region_score",
    "should_move",
]


class BalancePolicy(StrEnum):
    COUNT = "count"
    SIZE = "size"


def leader_score(stats: StoreStats, store: StoreView, policy: BalancePolicy) -> float:
    value = stats.leader_count if policy == BalancePolicy.COUNT else stats.leader_size
    return value / store.leader_weight


def region_score(stats: StoreStats, store: StoreView, policy: BalancePolicy) -> float:
    value = stats.region_count if policy == BalancePolicy.COUNT else stats.region_size
    return value / store.region_weight


def should_move(
    source_score: float,
    target_score: float,
    amount: float,
    source_weight: float = 1.0,
    target_weight: float = 1.0,
    tolerance: float = 0.0,
) -> bool:
    """Whether moving ``amount`` from the source to the target lowers the potential enough."""
    threshold = amount * (1.0 / source_weight + 1.0 / target_weight) / 2.0
    return source_score - target_score > threshold + tolerance


def add_influence(
    stats: Mapping[int, StoreStats], influences: Iterable[Mapping[int, StoreStats]]
) -> dict[int, StoreStats]:
    """``stats`` with every influence added (stores absent from ``stats`` are ignored)."""
    out = dict(stats)
    for influence in influences:
        for sid, delta in influence.items():
            if sid in out:
                out[sid] = out[sid] + delta
    return out


def potential(values: Mapping[int, float], weights: Mapping[int, float]) -> float:
    """``sum(value**2 / weight)``: what every balancing move strictly lowers."""
    return sum(v * v / weights[sid] for sid, v in values.items())


class SchedulePass:
    """What one scheduling pass must respect, updated as it makes operators.

    * ``stats``: the snapshot's statistics plus the influence of every running
      operator and of every operator made in this pass;
    * ``load``: per store, how many running or new operators put work on it;
      a store that is ``up`` takes at most ``store_limit`` of them (a store
      that is not up does no work for an operator: a down store's replicas
      are replaced without it, a drained one only drops data);
    * ``busy``: regions that already have an operator (one at a time).
    """

    __slots__ = ("busy", "load", "made", "snapshot", "stats", "store_limit")

    def __init__(
        self, snapshot: ClusterSnapshot, running: Iterable[Operator], store_limit: int
    ) -> None:
        live = [op for op in running if not op.is_finished]
        self.snapshot = snapshot
        self.stats = add_influence(snapshot.stats, (op.influence() for op in live))
        self.load: Counter[int] = Counter(sid for op in live for sid in op.store_ids())
        self.busy = {op.region_id for op in live}
        self.store_limit = store_limit
        self.made: list[Operator] = []

    def has_room(self, store_ids: Iterable[int]) -> bool:
        """Whether every ``up`` store among ``store_ids`` can take one more operator."""
        for sid in store_ids:
            store = self.snapshot.stores.get(sid)
            if store is not None and store.is_up and self.load[sid] >= self.store_limit:
                return False
        return True

    def add(self, op: Operator) -> None:
        """Account for a new operator."""
        self.stats = add_influence(self.stats, [op.influence()])
        self.load.update(op.store_ids())
        self.busy.add(op.region_id)
        self.made.append(op)
