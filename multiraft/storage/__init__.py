"""The LMDB storage engine of a store: key layout, write batches, Raft storage, snapshots.

One LMDB environment per store (:class:`Engine`); one write transaction per
ready round for all regions (:class:`WriteBatch`, :class:`StorageWriter`); the
Raft core's Storage for each region (:class:`RaftStorage`); region snapshots,
log compaction and startup recovery. ``docs/storage.md`` has the key layout,
the atomicity rules and the recovery procedure.
"""

from multiraft.storage.compaction import CompactionError, CompactResult, CompactTask, compact_log
from multiraft.storage.engine import (
    DataDirLocked,
    Engine,
    EngineError,
    EngineStats,
    IncompatibleFormat,
    ReadInvalidated,
    StorageFull,
)
from multiraft.storage.raft_storage import RaftStorage, SnapshotProducer, StorageOptions
from multiraft.storage.recovery import (
    RecoveredRegion,
    RecoveryError,
    bootstrap_store,
    load_store_ident,
    recover,
)
from multiraft.storage.snapshot import SnapshotError, metadata_snapshot
from multiraft.storage.write_batch import (
    BatchStatistics,
    StorageWriter,
    WriteBatch,
    WriterStatistics,
)

__all__ = [
    "BatchStatistics",
    "CompactResult",
    "CompactTask",
    "CompactionError",
    "DataDirLocked",
    "Engine",
    "EngineError",
    "EngineStats",
    "IncompatibleFormat",
    "RaftStorage",
    "ReadInvalidated",
    "RecoveredRegion",
    "RecoveryError",
    "SnapshotError",
    "SnapshotProducer",
    "StorageFull",
    "StorageOptions",
    "StorageWriter",
    "WriteBatch",
    "WriterStatistics",
    "bootstrap_store",
    "compact_log",
    "load_store_ident",
    "metadata_snapshot",
    "recover",
]
