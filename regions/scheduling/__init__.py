"""Scheduling policies and operators, sans-IO (PD ``pkg/schedule``).

* :mod:`~regions.scheduling.cluster`: the cluster snapshot the policies read;
* :mod:`~regions.scheduling.steps`: the steps an operator is made of;
* :mod:`~regions.scheduling.operators`: operators, their progress, and the builders;
* :mod:`~regions.scheduling.scores`: store scores, operator influence, when to move;
* :mod:`~regions.scheduling.balance`: balance-leader and balance-region;
* :mod:`~regions.scheduling.replica_checker`: missing, extra, down and offline replicas.

Every policy is a pure function of a snapshot, the running operators, the
time and an id allocator passed in by the placement service.
"""

from regions.scheduling.balance import BalanceConfig, balance_leaders, balance_regions
from regions.scheduling.cluster import (
    ClusterSnapshot,
    RegionView,
    StoreState,
    StoreStats,
    StoreView,
)
from regions.scheduling.operators import (
    AddLearner,
    DemoteVoter,
    JointEnter,
    JointLeave,
    Operator,
    OperatorError,
    OperatorKind,
    OperatorStatus,
    OperatorTimeouts,
    PromoteLearner,
    RemovePeer,
    SplitRegion,
    Step,
    TransferLeader,
    make_add_peer,
    make_leave_joint,
    make_move_peer,
    make_promote_learner,
    make_remove_peer,
    make_split_region,
    make_transfer_leader,
)
from regions.scheduling.replica_checker import ReplicaConfig, check_region, check_replicas
from regions.scheduling.scores import BalancePolicy, SchedulePass

__all__ = [
    "AddLearner",
    "BalanceConfig",
    "BalancePolicy",
    "ClusterSnapshot",
    "DemoteVoter",
    "JointEnter",
    "JointLeave",
    "Operator",
    "OperatorError",
    "OperatorKind",
    "OperatorStatus",
    "OperatorTimeouts",
    "PromoteLearner",
    "RegionView",
    "RemovePeer",
    "ReplicaConfig",
    "SchedulePass",
    "SplitRegion",
    "Step",
    "StoreState",
    "StoreStats",
    "StoreView",
    "TransferLeader",
    "balance_leaders",
    "balance_regions",
    "check_region",
    "check_replicas",
    "make_add_peer",
    "make_leave_joint",
    "make_move_peer",
    "make_promote_learner",
    "make_remove_peer",
    "make_split_region",
    "make_transfer_leader",
]
