"""Received snapshot streams, staged in LMDB as they arrive: the receiving half of an apply.

Theory of operation
-------------------
A region snapshot (:mod:`multiraft.storage.snapshot`) travels as a stream of
encoded parts: a header, data chunks numbered from 1, and a footer. The
receiver never holds the whole stream in memory. A :class:`SnapshotStager`
checks each part as it comes in: the order, the region id, that the keys are
sorted, storable and inside the region, and that the footer's counts and
``crc32`` match what arrived. It writes the parts into the ``snap_staging``
sub-database, in write transactions whose size the caller bounds, under the
*staging prefix* ``region_id | snap_id``. The snap id is unique in the store
(:func:`next_snapshot_id`), so two receives for one region never mix (a
retry, or two leaders in different terms).

A complete stream becomes a :class:`StagedSnapshot` handle with the header,
the part count, the bytes and the keys. A handle is *consumed* exactly once,
by one of two functions:

* :func:`multiraft.storage.snapshot.apply_staged` installs it;
* :func:`discard` deletes it.

Memory: a stager holds only the parts not yet written (the caller flushes
every few MiB, see :func:`stage`), never the stream.

Crash safety: staged parts change nothing else in the store. A crash while
staging leaves a prefix without an apply plan. Startup recovery
(``snapshot.recover_interrupted``) deletes it. Only the ``Applying`` mark
writes the plan key, and then the stream becomes the redo log of that apply.
For that reason :func:`delete_stream` keeps a stream that has a plan.

Threads: every function that takes an engine blocks on LMDB, so call it from
a worker thread (the store uses its ``StorageWriter``). Only one thread may
use a stager at a time.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from multiraft.storage import keys
from multiraft.storage.engine import Db, Engine, Txn
from multiraft.storage.write_batch import delete_range
from multiraft.wire.records import (
    RecordCorrupted,
    SnapshotData,
    SnapshotFooter,
    SnapshotHeader,
    SnapshotPart,
    decode_snapshot_part,
)

__all__ = [
    "DEFAULT_STAGE_TXN_BYTES",
    "SnapshotError",
    "SnapshotStager",
    "StagedSnapshot",
    "delete_prefix",
    "delete_stream",
    "discard",
    "next_snapshot_id",
    "stage",
]

#: Bytes of parts written per staging transaction by :func:`stage` (and the store's receiver).
DEFAULT_STAGE_TXN_BYTES = 4 << 20
#: Parts deleted per transaction when a staged stream is dropped.
_DELETE_PARTS = 256


class SnapshotError(Exception):
    """A snapshot cannot be generated from, or applied to, this region as asked."""


@dataclass(eq=False, slots=True, weakref_slot=True)
class StagedSnapshot:
    """A complete, checked snapshot stream in ``snap_staging``, ready to apply.

    ``len(staged)`` is the number of parts (header, data chunks, footer):
    the last chunk's ``seq`` plus one.
    """

    region_id: int
    snapshot_id: int
    header: SnapshotHeader
    parts: int
    total_bytes: int
    keys: int
    #: Set by :meth:`consume`: an apply or a discard has taken the stream.
    consumed: bool = False
    #: Called once, by :meth:`consume`, from the thread that consumes (the receiver's bookkeeping).
    on_consume: Callable[[], None] | None = None

    @property
    def prefix(self) -> bytes:
        return keys.staging_prefix(self.region_id, self.snapshot_id)

    def __len__(self) -> int:
        return self.parts

    def consume(self) -> None:
        """Take the stream for an apply or a discard.

        Raises:
            SnapshotError: it was taken already.
        """
        if self.consumed:
            raise SnapshotError(
                f"staged snapshot {self.snapshot_id} of region {self.region_id} was already "
                "applied or discarded"
            )
        self.consumed = True
        callback, self.on_consume = self.on_consume, None
        if callback is not None:
            callback()


class SnapshotStager:
    """Checks one stream part by part and writes the checked parts to staging.

    :meth:`check` (pure) validates a part and keeps it until the next
    :meth:`flush`, which writes the kept parts in one transaction. After the
    footer, :meth:`finish` gives the handle.
    """

    def __init__(self, region_id: int, snapshot_id: int) -> None:
        self.region_id = region_id
        self.snapshot_id = snapshot_id
        self.prefix = keys.staging_prefix(region_id, snapshot_id)
        self.header: SnapshotHeader | None = None
        self._footer: SnapshotFooter | None = None
        self._data_chunks = 0
        self._keys = 0
        self._crc = 0
        self._last_key = b""
        self._next_seq = 0  # the staging seq of the next part
        self._pending: list[tuple[bytes, bytes]] = []
        #: Bytes of the parts checked but not yet written.
        self.pending_bytes = 0
        #: Bytes of the parts written.
        self.staged_bytes = 0

    def check(self, raw: bytes) -> SnapshotPart:
        """Validate the next part and keep it for :meth:`flush`.

        Raises:
            SnapshotError: the part is malformed, out of order, for another region,
                or breaks the counts the footer gives.
        """
        if self._footer is not None:
            raise SnapshotError("snapshot stream continues after its footer")
        try:
            part = decode_snapshot_part(raw)
        except RecordCorrupted as exc:
            raise SnapshotError(f"snapshot part {self._next_seq}: {exc}") from exc
        header = self.header
        if header is None:
            if not isinstance(part, SnapshotHeader):
                raise SnapshotError("snapshot stream does not start with a header")
            rid = self.region_id
            if part.region_id != rid or part.region.id != rid:
                raise SnapshotError(f"snapshot of region {part.region_id} given for region {rid}")
            if not part.region.peers:
                raise SnapshotError(f"snapshot of region {rid} has no peers")
            self.header = part
        elif isinstance(part, SnapshotData):
            self._check_data(part, header, raw)
        elif isinstance(part, SnapshotFooter):
            got = (self._data_chunks, self._keys, self._crc)
            if (part.data_chunks, part.keys, part.checksum) != got:
                raise SnapshotError(
                    f"snapshot footer says {part.data_chunks} chunks/{part.keys} keys/crc "
                    f"{part.checksum:#x}, received {got[0]}/{got[1]}/{got[2]:#x}"
                )
            self._footer = part
        else:
            raise SnapshotError("a second snapshot header in one stream")
        self._pending.append((keys.staging_part_key(self.prefix, self._next_seq), raw))
        self._next_seq += 1
        self.pending_bytes += len(raw)
        return part

    def _check_data(self, part: SnapshotData, header: SnapshotHeader, raw: bytes) -> None:
        if part.seq != self._data_chunks + 1:
            raise SnapshotError(
                f"snapshot data chunk {part.seq} where {self._data_chunks + 1} was due"
            )
        region = header.region
        last = self._last_key
        for k, _ in part.pairs:
            if not k or len(k) > keys.MAX_DATA_KEY_SIZE:
                raise SnapshotError(f"snapshot key of {len(k)} bytes cannot be stored")
            if k <= last or not region.contains(k):
                raise SnapshotError(f"snapshot key {k!r} is out of order or outside the region")
            last = k
        self._last_key = last
        self._data_chunks += 1
        self._keys += len(part.pairs)
        self._crc = zlib.crc32(raw, self._crc)

    def _put_pending(self, txn: Txn, *, db: Db) -> None:
        # Re-runnable (Engine.write may run it again after growing the map): puts only.
        txn.cursor(db).putmulti(self._pending)

    def flush(self, engine: Engine) -> int:
        """Write the parts checked since the last flush, in one transaction; their bytes."""
        if not self._pending:
            return 0
        engine.write(functools.partial(self._put_pending, db=engine.dbs.snap_staging))
        n = self.pending_bytes
        self._pending = []
        self.pending_bytes = 0
        self.staged_bytes += n
        return n

    def stage(self, engine: Engine, parts: Iterable[bytes]) -> int:
        """:meth:`check` each of ``parts``, then :meth:`flush` them; the bytes written."""
        for raw in parts:
            self.check(raw)
        return self.flush(engine)

    @property
    def complete(self) -> bool:
        """The footer has been checked."""
        return self._footer is not None

    def finish(self) -> StagedSnapshot:
        """The handle of the complete, written stream.

        Raises:
            SnapshotError: the footer has not arrived, or parts are still unwritten.
        """
        if self.header is None or self._footer is None:
            raise SnapshotError("snapshot stream ended before its footer")
        if self._pending:
            raise SnapshotError("snapshot parts checked but not written; flush first")
        return StagedSnapshot(self.region_id, self.snapshot_id, self.header, self._next_seq,
                              self.staged_bytes, self._keys)  # fmt: skip


def stage(
    engine: Engine,
    region_id: int,
    parts: Iterable[bytes],
    *,
    snapshot_id: int | None = None,
    txn_bytes: int = DEFAULT_STAGE_TXN_BYTES,
    on_flush: Callable[[], None] | None = None,
) -> StagedSnapshot:
    """Check and stage a whole stream, ``txn_bytes`` per transaction (blocking).

    ``snapshot_id`` defaults to :func:`next_snapshot_id`. ``on_flush`` runs
    after each staging transaction (tests use it to interrupt). On any failure
    the parts already staged are deleted.

    Raises:
        SnapshotError: the stream is malformed, incomplete or for another region.
    """
    sid = next_snapshot_id(engine) if snapshot_id is None else snapshot_id
    stager = SnapshotStager(region_id, sid)
    try:
        for raw in parts:
            stager.check(raw)
            if stager.pending_bytes >= txn_bytes:
                stager.flush(engine)
                if on_flush is not None:
                    on_flush()
        stager.flush(engine)
        return stager.finish()
    except BaseException:
        delete_stream(engine, region_id, sid)
        raise


def next_snapshot_id(engine: Engine) -> int:
    """One more than the largest snap id in ``snap_staging`` (1 when it is empty)."""
    top = 0
    with engine.read() as txn:
        cur = txn.cursor(engine.dbs.snap_staging)
        found = cur.last()
        # The last key of each region holds that region's largest snap id: one seek per region.
        while found:
            key = cur.key()
            if len(key) == 24:  # 16-byte keys are the older region_id|seq form: no snap id
                top = max(top, keys.decode_staging_key(key)[1])
            found = cur.set_range(key[:8]) and cur.prev()
    return top + 1


def delete_stream(engine: Engine, region_id: int, snapshot_id: int) -> bool:
    """Delete every staged part of one stream, in bounded transactions (blocking).

    Returns False, deleting nothing, if the stream has an apply plan: it is the
    redo log of an apply that a crash interrupted, and only recovery may finish it.
    """
    return delete_prefix(engine, keys.staging_prefix(region_id, snapshot_id))


def delete_prefix(engine: Engine, prefix: bytes) -> bool:
    """:func:`delete_stream` by staging prefix."""
    db = engine.dbs.snap_staging
    plan_key = keys.staging_part_key(prefix, keys.STAGING_PLAN_SEQ)
    start, end = keys.staging_prefix_range(prefix)

    def step(txn: Txn) -> int:
        if txn.get(plan_key, db=db) is not None:
            return -1
        return delete_range(txn, db, start, end, _DELETE_PARTS)

    while True:
        n = engine.write(step)
        if n < 0:
            return False
        if n < _DELETE_PARTS:
            return True


def discard(engine: Engine, staged: StagedSnapshot) -> bool:
    """Consume ``staged`` and delete its parts (blocking); see :func:`delete_stream`.

    Raises:
        SnapshotError: ``staged`` was already applied or discarded.
    """
    staged.consume()
    return delete_stream(engine, staged.region_id, staged.snapshot_id)
