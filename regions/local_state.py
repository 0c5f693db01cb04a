"""The per-region records a store persists beside the data (TiKV's raft_serverpb).

* ``RaftLocalState``: the Raft log's durable tail — the hard state and the last
  log index. Written in the same transaction as the log entries it describes.
* ``ApplyState``: how far the state machine has applied, and where the log was
  truncated. Written in the same transaction as the data it describes, so
  apply happens exactly once across crashes.
* ``RegionLocalState``: this store's view of the region descriptor and the
  replica's lifecycle (Normal, Applying a snapshot, Tombstone after removal).
  A tombstone is kept forever so that stale messages for it are refused.

Regions created by a split start their log at ``RAFT_INIT_LOG_INDEX`` /
``RAFT_INIT_LOG_TERM`` (TiKV uses 5/5), so that an empty replica created by a
message must first receive a snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from multiraft.raft.types import HardState
from regions.region import Region

RAFT_INIT_LOG_INDEX = 5
RAFT_INIT_LOG_TERM = 5


class PeerState(IntEnum):
    Normal = 0
    Applying = 1
    Tombstone = 2


@dataclass(slots=True)
class RaftLocalState:
    hard_state: HardState = field(default_factory=HardState)
    last_index: int = 0


@dataclass(slots=True)
class ApplyState:
    """Invariant: ``truncated_index <= applied_index``; the first log index is truncated + 1."""

    applied_index: int = 0
    truncated_index: int = 0
    truncated_term: int = 0


@dataclass(slots=True)
class RegionLocalState:
    state: PeerState = PeerState.Normal
    region: Region = field(default_factory=lambda: Region(id=0))


@dataclass(slots=True, frozen=True)
class StoreIdent:
    """Written once when a store bootstraps its data directory."""

    cluster_id: int
    store_id: int
