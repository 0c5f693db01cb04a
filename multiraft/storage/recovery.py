"""Store startup: list every region from its region-state record, without walking any log.

Theory of operation
-------------------
Every replica this store hosts, initialized or not, live or tombstoned, has
a record in the ``region_state`` sub-database (the store writes it in the
batch that creates the replica, with the replica's first raft state). At
startup :func:`recover` scans that one B-tree and, for each region, does three
point reads: ``RaftLocalState`` (hard state and last index), ``ApplyState``
(applied index, truncated index and term: the first index is
``truncated_index + 1``) and ``ConfState``. That is everything a
:class:`~multiraft.storage.raft_storage.RaftStorage` needs
(:meth:`~multiraft.storage.raft_storage.RaftStorage.from_recovered`), so the
cost of a restart grows with the number of regions, not with the length of
their logs.

Before listing, :func:`recover` finishes any snapshot apply a crash
interrupted (:func:`multiraft.storage.snapshot.recover_interrupted`), so no
region comes back ``Applying``.

The records are checked against the invariants the write rules guarantee
(``docs/storage.md``); a violation raises :class:`RecoveryError` naming the
region, because starting a Raft group on them would fail later and less
clearly (raft-rs refuses ``hs.commit > last_index``).
"""

from __future__ import annotations

from dataclasses import dataclass

from multiraft.raft.types import ConfState, HardState
from multiraft.storage import keys
from multiraft.storage.engine import Dbs, Engine, Txn
from multiraft.wire.records import (
    RecordCorrupted,
    decode_apply_state,
    decode_conf_state,
    decode_raft_local_state,
    decode_region_local_state,
    decode_store_ident,
    encode_store_ident,
)
from regions.local_state import ApplyState, PeerState, RaftLocalState, StoreIdent
from regions.region import Region

__all__ = [
    "RecoveredRegion",
    "RecoveryError",
    "bootstrap_store",
    "load_store_ident",
    "read_region_records",
    "recover",
]


class RecoveryError(Exception):
    """The persisted records of a region break an invariant: the data directory is damaged."""


@dataclass(frozen=True, slots=True)
class RecoveredRegion:
    """One replica as found on disk at startup."""

    region_id: int
    peer_state: PeerState
    region: Region
    raft_state: RaftLocalState
    apply_state: ApplyState
    conf_state: ConfState

    @property
    def hard_state(self) -> HardState:
        return self.raft_state.hard_state

    @property
    def first_index(self) -> int:
        return self.apply_state.truncated_index + 1

    @property
    def last_index(self) -> int:
        return max(self.raft_state.last_index, self.apply_state.truncated_index)

    @property
    def initialized(self) -> bool:
        """Has a key range and peers (a replica created by a message has neither yet)."""
        return bool(self.region.peers)

    @property
    def tombstone(self) -> bool:
        return self.peer_state == PeerState.Tombstone


def read_region_records(
    txn: Txn, dbs: Dbs, region_id: int
) -> tuple[RaftLocalState, ApplyState, ConfState]:
    """The raft state, apply state and conf state of a region; absent ones are the zero values."""
    key = keys.region_key(region_id)
    raw = txn.get(key, db=dbs.raft_state)
    raft = decode_raft_local_state(raw) if raw is not None else RaftLocalState()
    raw = txn.get(key, db=dbs.apply_state)
    apply = decode_apply_state(raw) if raw is not None else ApplyState()
    raw = txn.get(key, db=dbs.conf_state)
    conf = decode_conf_state(raw) if raw is not None else ConfState()
    return raft, apply, conf


def recover(engine: Engine, *, finish_snapshots: bool = True) -> list[RecoveredRegion]:
    """Every region with a region-state record, in region-id order.

    Raises:
        RecoveryError: a region's records contradict each other.
        RecordCorrupted: a record does not decode.
    """
    if finish_snapshots:
        # Imported here: the snapshot module imports this one.
        from multiraft.storage.snapshot import recover_interrupted

        recover_interrupted(engine)
    dbs = engine.dbs
    out: list[RecoveredRegion] = []
    with engine.read() as txn:
        for key, val in txn.cursor(dbs.region_state):
            rid = keys.decode_region_key(key)
            state = decode_region_local_state(val)
            if state.region.id != rid:
                raise RecordCorrupted(f"region-state key {rid} holds region {state.region.id}")
            raft, apply, conf = read_region_records(txn, dbs, rid)
            rec = RecoveredRegion(rid, state.state, state.region, raft, apply, conf)
            if state.state != PeerState.Tombstone:
                _check(rec)
            out.append(rec)
    return out


def _check(rec: RecoveredRegion) -> None:
    hs = rec.hard_state
    apply = rec.apply_state
    last = rec.last_index
    rid = rec.region_id
    if hs.commit > last:
        raise RecoveryError(f"region {rid}: hard state commit {hs.commit} > last index {last}")
    if apply.truncated_index > apply.applied_index:
        raise RecoveryError(
            f"region {rid}: truncated index {apply.truncated_index} > applied index {apply.applied_index}"
        )
    if apply.applied_index > max(hs.commit, apply.truncated_index):
        raise RecoveryError(
            f"region {rid}: applied index {apply.applied_index} > commit index {hs.commit}"
        )


def load_store_ident(engine: Engine) -> StoreIdent | None:
    """The store's identity, or None if the data directory was never bootstrapped."""
    with engine.read() as txn:
        raw = txn.get(keys.STORE_IDENT_KEY, db=engine.dbs.meta)
    return decode_store_ident(raw) if raw is not None else None


def bootstrap_store(engine: Engine, ident: StoreIdent) -> None:
    """Write the store identity once; idempotent for the same identity.

    Raises:
        RecoveryError: the directory already belongs to another cluster or store.
    """

    def put(txn: Txn) -> None:
        raw = txn.get(keys.STORE_IDENT_KEY, db=engine.dbs.meta)
        if raw is not None:
            have = decode_store_ident(raw)
            if have != ident:
                raise RecoveryError(f"{engine.path} already belongs to {have}, not {ident}")
            return
        txn.put(keys.STORE_IDENT_KEY, encode_store_ident(ident), db=engine.dbs.meta)

    engine.write(put)
