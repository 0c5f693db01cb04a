"""Sans-IO region logic: Region, RegionEpoch, key ranges, the persisted per-region
records, and (later) the region map, split and scheduling policies.

Pure and deterministic: no I/O, no clock, no randomness. It may import the plain
types of :mod:`multiraft.raft` and nothing else of ours.
"""

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

__all__ = [
    "RAFT_INIT_LOG_INDEX",
    "RAFT_INIT_LOG_TERM",
    "ApplyState",
    "Peer",
    "PeerRole",
    "PeerState",
    "RaftLocalState",
    "Region",
    "RegionEpoch",
    "RegionLocalState",
    "StoreIdent",
]
