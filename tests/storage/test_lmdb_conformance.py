"""The Storage conformance suite (tests/raft/test_storage.py) against the LMDB RaftStorage.

Three drivers exercise the three ways a RaftStorage answers:

* ``commit``: every write is committed at once (reads hit the tail cache);
* ``staged``: writes stay in one open WriteBatch that is never committed
  unless a compaction needs durable entries, so every read is served from
  the in-memory view, as raft-rs's async persistence requires;
* ``disk``: no tail cache, and the storage reloads itself from disk after
  every commit, so every read goes through LMDB.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from multiraft.raft.storage import Storage
from multiraft.raft.types import ConfState, Entry, HardState, Snapshot
from multiraft.storage import Engine, RaftStorage, WriteBatch, metadata_snapshot

try:
    from tests.raft.test_storage import StorageConformance, StorageDriver
except ImportError:  # pytest's prepend import mode with tests/raft on sys.path
    from test_storage import StorageConformance, StorageDriver  # type: ignore[no-redef]


class LmdbDriver:
    """A :class:`StorageDriver` over one Engine; each ``create`` is a new region."""

    def __init__(self, engine: Engine, mode: str) -> None:
        self.engine = engine
        self.mode = mode
        self._next_region = 1
        self._batch: WriteBatch | None = None

    def create(self) -> Storage:
        rid = self._next_region
        self._next_region += 1
        cache = 0 if self.mode == "disk" else 1024
        return RaftStorage.open(
            self.engine, rid, cache_max_entries=cache, snapshot_producer=metadata_snapshot
        )

    @staticmethod
    def _rs(store: Storage) -> RaftStorage:
        assert isinstance(store, RaftStorage)
        return store

    def _batch_for_write(self) -> WriteBatch:
        if self.mode == "staged":
            if self._batch is None:
                self._batch = WriteBatch()
            return self._batch
        return WriteBatch()

    def _done(self, store: RaftStorage, batch: WriteBatch) -> None:
        if self.mode == "staged":
            return
        batch.commit(self.engine)
        if self.mode == "disk":
            store.reload()

    def _flush(self) -> None:
        if self._batch is not None:
            self._batch.commit(self.engine)
            self._batch = None

    def append(self, store: Storage, ents: list[Entry]) -> None:
        rs = self._rs(store)
        batch = self._batch_for_write()
        rs.append(ents, batch)
        self._done(rs, batch)

    def apply_snapshot(self, store: Storage, snapshot: Snapshot) -> None:
        rs = self._rs(store)
        batch = self._batch_for_write()
        rs.apply_snapshot_meta(snapshot.metadata, batch)
        self._done(rs, batch)

    def compact(self, store: Storage, compact_index: int) -> None:
        # A store compacts only what it has applied, and applied entries are durable.
        rs = self._rs(store)
        self._flush()
        batch = WriteBatch()
        rs.set_applied_index(rs.last_index(), batch)
        batch.commit(self.engine)
        rs.compact(compact_index)
        if self.mode == "disk":
            rs.reload()

    def set_hard_state(self, store: Storage, hs: HardState) -> None:
        rs = self._rs(store)
        batch = self._batch_for_write()
        rs.set_hard_state(hs, batch)
        self._done(rs, batch)

    def set_conf_state(self, store: Storage, cs: ConfState) -> None:
        rs = self._rs(store)
        batch = self._batch_for_write()
        rs.set_conf_state(cs, batch)
        self._done(rs, batch)


class TestLmdbStorageConformance(StorageConformance):
    @pytest.fixture(params=["commit", "staged", "disk"])
    def driver(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StorageDriver]:
        # sync=False: these tests check semantics, not durability (the crash tests do).
        with Engine.open(tmp_path / "db", sync=False) as engine:
            yield LmdbDriver(engine, request.param)
