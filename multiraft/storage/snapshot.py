"""Region snapshots: generate one from a consistent read, apply one crash-safely.

Theory of operation
-------------------
**Generate.** :func:`generate` reads, from ONE LMDB read transaction, the
region descriptor, its apply state (the snapshot's index is the applied
index, its term that entry's term), its conf state, and every user key in
the region's range, and yields them as a stream of chunks encoded by
:mod:`multiraft.wire.records`: a header, data chunks of at most
``chunk_bytes`` plus one key-value pair each (numbered from 1), and a footer with the counts and a
``crc32`` over the data chunks' bytes. The transaction is used through
:class:`~multiraft.storage.engine.LongRead`, so a map resize in the middle
raises ``ReadInvalidated`` instead of producing a torn snapshot; the caller
starts again. Holding a read transaction pins old pages, so generate promptly.

**Apply.** :func:`apply` installs a received stream for a region:

1. *Stage*: every chunk is checked (order, region id, keys inside the new
   range and sorted, counts and checksum in the footer) and kept as received
   in the ``snap_staging`` sub-database, in bounded transactions. A bad or
   incomplete stream is discarded and nothing else has changed.
2. *Mark Applying* (one transaction): ``RegionLocalState{Applying, new
   region}``; the apply state at the snapshot (``applied = truncated =
   index``, ``truncated_term = term``); the conf state; ``RaftLocalState``
   (``commit = last_index = index``, term raised, vote kept); the region's
   log deleted; the plan (the key ranges to clear: the new range and, if the
   replica was initialized with another range, the old one); and any
   ``Tombstone`` states for regions the snapshot replaces (multiraft-design
   §1.4).
3. *Replace the data*, in bounded transactions: delete the planned ranges,
   then write the staged data chunks.
4. *Mark Normal* (one transaction): ``RegionLocalState{Normal}`` with the
   final apply state, and the staging deleted.

**Recovery.** A crash before step 2 leaves the region as it was (at most some
staging, which :func:`recover_interrupted` deletes). A crash after it leaves
the region ``Applying``: its staged stream and plan are still on disk, so
:func:`recover_interrupted` redoes steps 3 and 4 from the start. Both are
idempotent (delete the ranges, then write the same pairs). While a region is
``Applying`` the store must neither serve nor apply to it, so its apply state
and its data may disagree only in that state.

After :func:`apply`, reload the region's
:class:`~multiraft.storage.raft_storage.RaftStorage` (its log was replaced).
The store is responsible for the checks of multiraft-design §11.7 (epoch not
stale, no overlap with other initialized regions except those replaced).
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence

from multiraft.raft.errors import RaftFatal, SnapshotOutOfDate
from multiraft.raft.types import Snapshot, SnapshotMetadata
from multiraft.storage import keys
from multiraft.storage.engine import Dbs, Engine, Txn
from multiraft.storage.raft_storage import RaftStorage
from multiraft.storage.recovery import read_region_records
from multiraft.storage.write_batch import delete_range
from multiraft.wire.records import (
    RecordCorrupted,
    SnapshotData,
    SnapshotFooter,
    SnapshotHeader,
    decode_entry_term,
    decode_key_ranges,
    decode_region_local_state,
    decode_snapshot_part,
    encode_apply_state,
    encode_conf_state,
    encode_key_ranges,
    encode_raft_local_state,
    encode_region_local_state,
    encode_snapshot_part,
)
from regions.local_state import ApplyState, PeerState, RegionLocalState
from regions.region import Region

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "SnapshotError",
    "apply",
    "generate",
    "metadata_snapshot",
    "read_header",
    "recover_interrupted",
]

DEFAULT_CHUNK_BYTES = 1 << 20
#: Bytes of staged chunks or data written per transaction while applying.
DEFAULT_TXN_BYTES = 8 << 20
#: Keys deleted per transaction while clearing the old data.
DEFAULT_DELETE_BATCH = 20_000

PhaseHook = Callable[[str], None]


class SnapshotError(Exception):
    """A snapshot cannot be generated from, or applied to, this region as asked."""


def _range_of(region: Region) -> tuple[bytes, bytes | None]:
    return region.start_key, region.end_key or None


# ----------------------------------------------------------------------
# Generate


def read_header(txn: Txn, dbs: Dbs, region_id: int) -> SnapshotHeader:
    """What a snapshot of the region taken in ``txn`` would describe.

    Raises:
        SnapshotError: no such region, or it is not a Normal, initialized one.
    """
    raw = txn.get(keys.region_key(region_id), db=dbs.region_state)
    if raw is None:
        raise SnapshotError(f"region {region_id} does not exist on this store")
    state = decode_region_local_state(raw)
    if state.state != PeerState.Normal or not state.region.peers:
        raise SnapshotError(
            f"region {region_id} is {state.state.name}, not an initialized Normal region"
        )
    _, apply, conf = read_region_records(txn, dbs, region_id)
    index = apply.applied_index
    if index == apply.truncated_index:
        term = apply.truncated_term
    else:
        stored = txn.get(keys.log_key(region_id, index), db=dbs.raft_log)
        if stored is None:
            raise RecordCorrupted(f"region {region_id}: applied entry {index} is missing")
        term, _ = decode_entry_term(stored)
    return SnapshotHeader(region_id, state.region, index, term, conf)


def generate(
    engine: Engine, region_id: int, *, chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> Iterator[bytes]:
    """The region's snapshot as encoded chunks, all from one read transaction.

    Raises (while iterating):
        SnapshotError: see :func:`read_header`.
        ReadInvalidated: the map was resized meanwhile; generate again.
    """
    dbs = engine.dbs
    with engine.long_read() as lr:
        with lr.step() as txn:
            header = read_header(txn, dbs, region_id)
        yield encode_snapshot_part(header)
        start, end = _range_of(header.region)
        seq = nkeys = crc = 0
        resume: bytes | None = None  # the last key sent; continue after it
        while True:
            pairs: list[tuple[bytes, bytes]] = []
            size = 0
            done = True
            with lr.step() as txn:
                cur = txn.cursor(dbs.data)
                seek = resume if resume is not None else start
                found = cur.set_range(seek) if seek else cur.first()
                if found and resume is not None and cur.key() == resume:
                    found = cur.next()
                if found:
                    for k, v in cur.iternext():
                        if end is not None and k >= end:
                            break
                        pairs.append((k, v))
                        # +10: CBOR's two length headers, at most 5 bytes each (< 4 GiB).
                        size += len(k) + len(v) + 10
                        if size >= chunk_bytes:
                            done = False
                            break
            if pairs:
                seq += 1
                blob = encode_snapshot_part(SnapshotData(seq, pairs))
                crc = zlib.crc32(blob, crc)
                nkeys += len(pairs)
                resume = pairs[-1][0]
                yield blob
            if done:
                break
        yield encode_snapshot_part(SnapshotFooter(seq, nkeys, crc))


def metadata_snapshot(storage: RaftStorage, request_index: int, to: int) -> Snapshot:
    """A ``RaftStorage`` snapshot producer with MemStorage's semantics: metadata only.

    The snapshot is at ``hs.commit`` (the index raised to ``request_index``),
    assuming every committed entry is applied; for tests and harnesses, where
    no state machine data has to travel.

    Raises:
        RaftFatal: ``hs.commit`` is below the truncated index or past the log.
    """
    index = storage.hard_state().commit
    trunc = storage.first_index() - 1
    if index < trunc:
        raise RaftFatal(f"commit {index} < snapshot_metadata.index {trunc}")
    if index > storage.last_index():
        raise RaftFatal(f"commit {index} is not in the log")
    meta = SnapshotMetadata(storage.conf_state(), max(index, request_index), storage.term(index))
    return Snapshot(metadata=meta)


# ----------------------------------------------------------------------
# Apply


def apply(
    engine: Engine,
    region_id: int,
    chunks: Iterable[bytes],
    *,
    tombstones: Sequence[RegionLocalState] = (),
    txn_bytes: int = DEFAULT_TXN_BYTES,
    delete_batch: int = DEFAULT_DELETE_BATCH,
    on_phase: PhaseHook | None = None,
) -> SnapshotHeader:
    """Install a snapshot stream as region ``region_id`` (blocking; run it in a thread).

    ``tombstones`` are written with the Applying mark (regions this one replaces).
    ``on_phase`` is called after ``"staged"``, ``"applying"``, ``"cleared"``,
    ``"written"`` and ``"normal"`` (tests use it to interrupt).

    Raises:
        SnapshotError: the stream is malformed, incomplete or for another region,
            or the region is already Applying (run :func:`recover_interrupted`).
        SnapshotOutOfDate: the snapshot index is not past the region's truncated index.
    """
    hook = on_phase or _no_hook
    # Before touching the staging: an interrupted apply's staging is its redo log.
    if _is_applying(engine, region_id):
        raise SnapshotError(f"region {region_id} is already applying a snapshot; recover it first")
    header = _stage(engine, region_id, chunks, txn_bytes)
    hook("staged")
    try:
        _mark_applying(engine, header, tombstones)
    except BaseException:
        if not _is_applying(engine, region_id):
            _clear_staging(engine, region_id)
        raise
    hook("applying")
    _finish(engine, region_id, txn_bytes, delete_batch, hook)
    return header


def _no_hook(phase: str) -> None:
    pass


def _is_applying(engine: Engine, region_id: int) -> bool:
    with engine.read() as txn:
        raw = txn.get(keys.region_key(region_id), db=engine.dbs.region_state)
    return raw is not None and decode_region_local_state(raw).state == PeerState.Applying


def _stage(
    engine: Engine, region_id: int, chunks: Iterable[bytes], txn_bytes: int
) -> SnapshotHeader:
    dbs = engine.dbs
    _clear_staging(engine, region_id)
    header: SnapshotHeader | None = None
    footer: SnapshotFooter | None = None
    seq = nkeys = crc = 0
    last_key = b""
    buf: list[tuple[int, bytes]] = []
    buf_bytes = 0

    def flush(txn: Txn) -> None:
        for s, raw in buf:
            txn.put(keys.staging_key(region_id, s), raw, db=dbs.snap_staging)

    try:
        for raw in chunks:
            if footer is not None:
                raise SnapshotError("snapshot stream continues after its footer")
            try:
                chunk = decode_snapshot_part(raw)
            except RecordCorrupted as exc:
                raise SnapshotError(f"snapshot chunk {seq + 1}: {exc}") from exc
            if header is None:
                if not isinstance(chunk, SnapshotHeader):
                    raise SnapshotError("snapshot stream does not start with a header")
                if chunk.region_id != region_id or chunk.region.id != region_id:
                    raise SnapshotError(
                        f"snapshot of region {chunk.region_id} given for region {region_id}"
                    )
                if not chunk.region.peers:
                    raise SnapshotError(f"snapshot of region {region_id} has no peers")
                header = chunk
                buf.append((0, raw))
            elif isinstance(chunk, SnapshotData):
                if chunk.seq != seq + 1:
                    raise SnapshotError(f"snapshot data chunk {chunk.seq} where {seq + 1} was due")
                region = header.region
                for k, _ in chunk.pairs:
                    if not k or len(k) > keys.MAX_DATA_KEY_SIZE:
                        raise SnapshotError(f"snapshot key of {len(k)} bytes cannot be stored")
                    if not region.contains(k) or k <= last_key:
                        raise SnapshotError(
                            f"snapshot key {k!r} is out of order or outside the region"
                        )
                    last_key = k
                seq += 1
                nkeys += len(chunk.pairs)
                crc = zlib.crc32(raw, crc)
                buf.append((seq, raw))
            elif isinstance(chunk, SnapshotFooter):
                if (chunk.data_chunks, chunk.keys, chunk.checksum) != (seq, nkeys, crc):
                    raise SnapshotError(
                        f"snapshot footer says {chunk.data_chunks} chunks/{chunk.keys} keys/crc "
                        f"{chunk.checksum:#x}, received {seq}/{nkeys}/{crc:#x}"
                    )
                footer = chunk
                buf.append((seq + 1, raw))
            else:
                raise SnapshotError("a second snapshot header in one stream")
            buf_bytes += len(raw)
            if buf_bytes >= txn_bytes:
                engine.write(flush)
                buf.clear()
                buf_bytes = 0
        if header is None or footer is None:
            raise SnapshotError("snapshot stream ended before its footer")
        if buf:
            engine.write(flush)
    except BaseException:
        _clear_staging(engine, region_id)
        raise
    return header


def _mark_applying(
    engine: Engine, header: SnapshotHeader, tombstones: Sequence[RegionLocalState]
) -> None:
    dbs = engine.dbs
    rid = header.region_id
    rkey = keys.region_key(rid)

    def mark(txn: Txn) -> None:
        raw = txn.get(rkey, db=dbs.region_state)
        old = decode_region_local_state(raw) if raw is not None else None
        if old is not None and old.state == PeerState.Applying:
            raise SnapshotError(f"region {rid} is already applying a snapshot; recover it first")
        raft, apply_st, _ = read_region_records(txn, dbs, rid)
        if header.index <= apply_st.truncated_index:
            raise SnapshotOutOfDate()
        new_start, new_end = header.region.start_key, header.region.end_key
        ranges = [(new_start, new_end)]
        if old is not None and old.region.peers:
            old_range = (old.region.start_key, old.region.end_key)
            if old_range != (new_start, new_end):
                ranges.append(old_range)
        txn.put(
            keys.staging_key(rid, keys.STAGING_PLAN_SEQ),
            encode_key_ranges(ranges),
            db=dbs.snap_staging,
        )
        for t in tombstones:
            txn.put(keys.region_key(t.region.id), encode_region_local_state(t), db=dbs.region_state)
        txn.put(
            rkey,
            encode_region_local_state(RegionLocalState(PeerState.Applying, header.region)),
            db=dbs.region_state,
        )
        apply_rec = ApplyState(header.index, header.index, header.term)
        txn.put(rkey, encode_apply_state(apply_rec), db=dbs.apply_state)
        txn.put(rkey, encode_conf_state(header.conf_state), db=dbs.conf_state)
        hs = raft.hard_state
        hs.term = max(hs.term, header.term)
        hs.commit = header.index
        txn.put(rkey, encode_raft_local_state(hs, header.index), db=dbs.raft_state)
        start, end = keys.region_log_range(rid)
        delete_range(txn, dbs.raft_log, start, end)

    engine.write(mark)


def _finish(
    engine: Engine, region_id: int, txn_bytes: int, delete_batch: int, hook: PhaseHook
) -> None:
    dbs = engine.dbs
    with engine.read() as txn:
        raw_header = txn.get(keys.staging_key(region_id, 0), db=dbs.snap_staging)
        raw_plan = txn.get(keys.staging_key(region_id, keys.STAGING_PLAN_SEQ), db=dbs.snap_staging)
    if raw_header is None or raw_plan is None:
        raise RecordCorrupted(f"region {region_id} is Applying but its staged snapshot is missing")
    header = decode_snapshot_part(raw_header)
    if not isinstance(header, SnapshotHeader) or header.region_id != region_id:
        raise RecordCorrupted(f"region {region_id}: staged snapshot header is invalid")
    for start, end in decode_key_ranges(raw_plan):
        clear = functools.partial(
            _delete_data, dbs=dbs, start=start, end=end or None, limit=delete_batch
        )
        while engine.write(clear) >= delete_batch:
            pass
    hook("cleared")
    next_seq = 1
    while next_seq:
        step = functools.partial(
            _write_staged, dbs=dbs, region_id=region_id, seq=next_seq, txn_bytes=txn_bytes
        )
        next_seq = engine.write(step)
    hook("written")

    def normal(txn: Txn) -> None:
        rkey = keys.region_key(region_id)
        txn.put(
            rkey,
            encode_region_local_state(RegionLocalState(PeerState.Normal, header.region)),
            db=dbs.region_state,
        )
        txn.put(
            rkey,
            encode_apply_state(ApplyState(header.index, header.index, header.term)),
            db=dbs.apply_state,
        )
        start, end = keys.region_staging_range(region_id)
        delete_range(txn, dbs.snap_staging, start, end)

    engine.write(normal)
    hook("normal")


def _delete_data(txn: Txn, *, dbs: Dbs, start: bytes, end: bytes | None, limit: int) -> int:
    return delete_range(txn, dbs.data, start, end, limit)


def _write_staged(txn: Txn, *, dbs: Dbs, region_id: int, seq: int, txn_bytes: int) -> int:
    """Write staged data chunks from ``seq`` on, up to about ``txn_bytes``; the next seq, or 0 at the end."""
    cur = txn.cursor(dbs.snap_staging)
    written = 0
    data = dbs.data
    if not cur.set_key(keys.staging_key(region_id, seq)):
        raise RecordCorrupted(f"region {region_id}: staged snapshot chunk {seq} is missing")
    for key, raw in cur.iternext():
        rid, s = keys.decode_staging_key(key)
        if rid != region_id or s != seq:
            raise RecordCorrupted(f"region {region_id}: staged snapshot chunk {seq} is missing")
        chunk = decode_snapshot_part(raw)
        if isinstance(chunk, SnapshotFooter):
            return 0
        if not isinstance(chunk, SnapshotData):
            raise RecordCorrupted(f"region {region_id}: staged chunk {seq} is not data")
        # A cursor on the data tree, not txn.put: the pairs are sorted, so
        # putmulti walks the B-tree forward in one C loop.
        txn.cursor(data).putmulti(chunk.pairs)
        written += len(raw)
        seq += 1
        if written >= txn_bytes:
            return seq
    raise RecordCorrupted(f"region {region_id}: staged snapshot has no footer")


def _clear_staging(engine: Engine, region_id: int) -> None:
    start, end = keys.region_staging_range(region_id)
    engine.write(lambda txn: delete_range(txn, engine.dbs.snap_staging, start, end))


def recover_interrupted(engine: Engine) -> list[int]:
    """Finish every snapshot apply a crash interrupted; drop abandoned staging. Startup only.

    Returns the ids of the regions it finished.
    """
    dbs = engine.dbs
    applying: list[int] = []
    staged: set[int] = set()
    with engine.read() as txn:
        for key, val in txn.cursor(dbs.region_state):
            if decode_region_local_state(val).state == PeerState.Applying:
                applying.append(keys.decode_region_key(key))
        cur = txn.cursor(dbs.snap_staging)
        found = cur.first()
        while found:
            rid, _ = keys.decode_staging_key(cur.key())
            staged.add(rid)
            # Jump to the next region's staging: one seek per region, not per chunk.
            _, end = keys.region_staging_range(rid)
            found = end is not None and cur.set_range(end)
    for rid in applying:
        _finish(engine, rid, DEFAULT_TXN_BYTES, DEFAULT_DELETE_BATCH, _no_hook)
    for rid in staged.difference(applying):
        _clear_staging(engine, rid)
    return applying
