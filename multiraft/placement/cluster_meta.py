"""The placement service's persisted metadata, in its own LMDB environment.

Theory of operation
-------------------
The environment lives directly in the placement data directory and is opened
through :class:`multiraft.storage.Engine`, which brings the directory lock (a
second service on the same directory gets ``DataDirLocked``), map growth and
one-transaction writes. The store's sub-databases it creates stay empty; the
service uses three of its own:

=====================  ==============================  ==================================
sub-database           key                             value
=====================  ==============================  ==================================
``placement``          ``cluster_id``                  u64, 8 bytes big-endian
                       ``bootstrapped``                ``b"\\x01"`` once the first region exists
                       ``id_high_water``               u64: every id <= it may be in use
                       ``bootstrap_pending``           ``[region_id, store_id*]`` (CBOR u64s):
                                                       stores yet to confirm the first region
``placement_stores``   store id (u64 big-endian)       ``[STORE]`` (placement_codec)
``placement_regions``  region id (u64 big-endian)      the region record (wire.records)
=====================  ==============================  ==================================

Regions are stored by id; :meth:`ClusterMeta.load` returns them all and the
service builds its key-ordered routing table (:class:`~regions.region_map.RegionMap`)
from them at startup, as PD rebuilds its region tree.

Every change is one :class:`MetaWrite` committed in one LMDB write
transaction (:meth:`ClusterMeta.commit`), so for example the first region, the
bootstrapped flag and the pending-confirmation set appear together or not at
all. The cluster id is chosen (random, non-zero, 64 bits) and committed the
first time the directory is opened, and never changes.

``commit`` blocks on an fsync: the service calls it through
``trio.to_thread.run_sync`` (one writer at a time).
"""

from __future__ import annotations

import os
import secrets
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from multiraft.storage import Engine
from multiraft.storage.engine import Txn
from multiraft.storage.keys import STORE_IDENT_KEY
from multiraft.wire.errors import WireError
from multiraft.wire.placement_codec import decode_store_info, encode_store_info
from multiraft.wire.placement_messages import StoreInfo
from multiraft.wire.records import decode_region, decode_u64_list, encode_region, encode_u64_list
from regions.region import Region

__all__ = ["BootstrapPending", "ClusterMeta", "MetaCorrupted", "MetaState", "MetaWrite"]

_DB_PLACEMENT = b"placement"
_DB_STORES = b"placement_stores"
_DB_REGIONS = b"placement_regions"
_CLUSTER_ID = b"cluster_id"
_BOOTSTRAPPED = b"bootstrapped"
_ID_HIGH_WATER = b"id_high_water"
_BOOTSTRAP_PENDING = b"bootstrap_pending"
_U64 = struct.Struct(">Q")
T = TypeVar("T")


class MetaCorrupted(Exception):
    """A record in the placement data directory does not decode: stop, do not guess."""


@dataclass(frozen=True, slots=True)
class BootstrapPending:
    """The first region, and the stores that have not yet shown they created it."""

    region_id: int
    store_ids: frozenset[int]


@dataclass(slots=True)
class MetaState:
    """Everything :meth:`ClusterMeta.load` reads back."""

    cluster_id: int
    bootstrapped: bool
    id_high_water: int
    stores: dict[int, StoreInfo]
    regions: list[Region]
    bootstrap_pending: BootstrapPending | None


@dataclass(slots=True)
class MetaWrite:
    """One atomic change. Fields left at their defaults are not touched.

    ``bootstrap_pending`` with no store ids left deletes the record.
    """

    stores: list[StoreInfo] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    deleted_regions: list[int] = field(default_factory=list)
    bootstrapped: bool = False
    bootstrap_pending: BootstrapPending | None = None
    id_high_water: int | None = None


class ClusterMeta:
    """The placement service's LMDB environment. Build with :meth:`open`."""

    def __init__(self, engine: Engine, cluster_id: int) -> None:
        self.engine = engine
        #: Chosen at the first open, then fixed.
        self.cluster_id = cluster_id
        env = engine.env
        self._meta = env.open_db(_DB_PLACEMENT)
        self._stores = env.open_db(_DB_STORES)
        self._regions = env.open_db(_DB_REGIONS)

    @classmethod
    def open(cls, data_dir: str | os.PathLike[str], *, sync: bool = True) -> ClusterMeta:
        """Open (creating) the metadata in ``data_dir``; pick the cluster id on first use.

        Raises:
            DataDirLocked: another process holds the directory.
            MetaCorrupted: the directory belongs to a store, or a record is damaged.
        """
        engine = Engine.open(Path(data_dir), sync=sync, max_dbs=16)
        try:
            meta = cls._setup(engine)
        except BaseException:
            engine.close()
            raise
        return meta

    @classmethod
    def _setup(cls, engine: Engine) -> ClusterMeta:
        with engine.read() as txn:
            if txn.get(STORE_IDENT_KEY, db=engine.dbs.meta) is not None:
                raise MetaCorrupted(
                    f"{engine.path} is a store's data directory, not the placement service's"
                )
        meta = cls(engine, 0)

        def ensure_cluster_id(txn: Txn) -> int:
            raw = txn.get(_CLUSTER_ID, db=meta._meta)
            if raw is not None:
                return _u64(raw, "cluster_id")
            cid = 0
            while cid == 0:
                cid = secrets.randbits(64)
            txn.put(_CLUSTER_ID, _U64.pack(cid), db=meta._meta)
            return cid

        meta.cluster_id = engine.write(ensure_cluster_id)
        return meta

    def close(self) -> None:
        """Close the environment and release the directory lock. Idempotent."""
        self.engine.close()

    def __enter__(self) -> ClusterMeta:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def path(self) -> Path:
        return self.engine.path

    def load(self) -> MetaState:
        """Read everything back (at startup).

        Raises:
            MetaCorrupted: a record does not decode.
        """
        with self.engine.read() as txn:
            bootstrapped = txn.get(_BOOTSTRAPPED, db=self._meta) == b"\x01"
            hw_raw = txn.get(_ID_HIGH_WATER, db=self._meta)
            high_water = 0 if hw_raw is None else _u64(hw_raw, "id_high_water")
            pending_raw = txn.get(_BOOTSTRAP_PENDING, db=self._meta)
            stores: dict[int, StoreInfo] = {}
            for key, raw in txn.cursor(db=self._stores):
                info = _decoded(decode_store_info, raw, f"store {key.hex()}")
                if _u64(key, "store key") != info.id:
                    raise MetaCorrupted(f"store record {key.hex()} holds store {info.id}")
                stores[info.id] = info
            regions = []
            for key, raw in txn.cursor(db=self._regions):
                region = _decoded(decode_region, raw, f"region {key.hex()}")
                if _u64(key, "region key") != region.id:
                    raise MetaCorrupted(f"region record {key.hex()} holds region {region.id}")
                regions.append(region)
        pending = None
        if pending_raw is not None:
            ids = _decoded(decode_u64_list, pending_raw, "bootstrap_pending")
            if not ids:
                raise MetaCorrupted("bootstrap_pending is empty")
            pending = BootstrapPending(ids[0], frozenset(ids[1:]))
        return MetaState(self.cluster_id, bootstrapped, high_water, stores, regions, pending)

    def commit(self, w: MetaWrite) -> None:
        """Apply ``w`` in one durable write transaction (blocking: call from a thread)."""

        def write(txn: Txn) -> None:
            for s in w.stores:
                txn.put(_U64.pack(s.id), encode_store_info(s), db=self._stores)
            for rid in w.deleted_regions:
                txn.delete(_U64.pack(rid), db=self._regions)
            for r in w.regions:
                txn.put(_U64.pack(r.id), encode_region(r), db=self._regions)
            if w.bootstrapped:
                txn.put(_BOOTSTRAPPED, b"\x01", db=self._meta)
            p = w.bootstrap_pending
            if p is not None:
                if p.store_ids:
                    record = encode_u64_list([p.region_id, *sorted(p.store_ids)])
                    txn.put(_BOOTSTRAP_PENDING, record, db=self._meta)
                else:
                    txn.delete(_BOOTSTRAP_PENDING, db=self._meta)
            if w.id_high_water is not None:
                txn.put(_ID_HIGH_WATER, _U64.pack(w.id_high_water), db=self._meta)

        self.engine.write(write)


def _u64(raw: bytes, what: str) -> int:
    if len(raw) != 8:
        raise MetaCorrupted(f"{what}: expected 8 bytes, got {len(raw)}")
    value: int = _U64.unpack(raw)[0]
    return value


def _decoded(decode: Callable[[bytes], T], raw: bytes, what: str) -> T:
    try:
        return decode(raw)
    except WireError as e:
        raise MetaCorrupted(f"placement record {what} is damaged: {e}") from None
