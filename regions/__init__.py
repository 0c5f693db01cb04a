"""Sans-IO region logic: Region, RegionEpoch, key ranges, the persisted per-region
records, the epoch rules, the region map, split and membership-change apply, and
(in :mod:`regions.scheduling`) the scheduling policies and operators.

Pure and deterministic: no I/O, no clock, no randomness. It may import the plain
types of :mod:`multiraft.raft` and nothing else of ours.
"""

from regions.conf_change import MembershipError, PeerChange, apply_conf_change
from regions.epoch import CommandKind, bump_epoch, check_epoch, is_stale
from regions.local_state import (
    RAFT_INIT_LOG_INDEX,
    RAFT_INIT_LOG_TERM,
    ApplyState,
    PeerState,
    RaftLocalState,
    RegionLocalState,
    StoreIdent,
)
from regions.region import Peer, PeerRole, Region, RegionEpoch
from regions.region_map import RegionMap
from regions.split import SplitError, SplitPolicy, apply_batch_split

__all__ = [
    "RAFT_INIT_LOG_INDEX",
    "RAFT_INIT_LOG_TERM",
    "ApplyState",
    "CommandKind",
    "MembershipError",
    "Peer",
    "PeerChange",
    "PeerRole",
    "PeerState",
    "RaftLocalState",
    "Region",
    "RegionEpoch",
    "RegionLocalState",
    "RegionMap",
    "SplitError",
    "SplitPolicy",
    "StoreIdent",
    "apply_batch_split",
    "apply_conf_change",
    "bump_epoch",
    "check_epoch",
    "is_stale",
]
