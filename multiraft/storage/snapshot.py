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

**Apply.** A received stream is first *staged*
(:mod:`multiraft.storage.staging`): every part is checked as it arrives
(order, region id, keys inside the new range and sorted, counts and checksum
in the footer) and written to the ``snap_staging`` sub-database under its own
prefix ``region_id | snap_id``, in bounded transactions, so the receiver
holds one chunk or so at a time, never the snapshot. A bad or incomplete
stream is deleted and nothing else has changed. :func:`apply_staged` then
installs the staged stream (:func:`apply` stages a whole iterable then does
the same):

1. *Mark Applying* (one transaction): ``RegionLocalState{Applying, new
   region}``; the apply state at the snapshot (``applied = truncated =
   index``, ``truncated_term = term``); the conf state; ``RaftLocalState``
   (``commit = last_index = index``, term raised, vote kept); the region's
   log deleted; the plan, under the stream's prefix (the key ranges to
   clear: the new range and, if the replica was initialized with another
   range, the old one); and any ``Tombstone`` states for regions the
   snapshot replaces (multiraft-design §1.4). The transaction also checks
   that the stream's header and footer are still staged.
2. *Replace the data*, in bounded transactions: delete the planned ranges,
   then write the staged data chunks, read back one at a time.
3. *Mark Normal* (one transaction): ``RegionLocalState{Normal}`` with the
   final apply state, and the stream's staging deleted.

**Recovery.** A crash before step 1 leaves the region as it was, plus staged
streams without a plan, which :func:`recover_interrupted` deletes. A crash
after it leaves the region ``Applying``. Its staged stream (the one with a
plan) is still on disk, so :func:`recover_interrupted` redoes steps 2 and 3
from the start. Both steps are idempotent: delete the ranges, then write the
same pairs. While a region is ``Applying`` the store must neither serve it
nor apply to it, so its apply state and its data may disagree only in that
state.

After :func:`apply_staged` (or :func:`apply`), reload the region's
:class:`~multiraft.storage.raft_storage.RaftStorage` (its log was replaced).
The store is responsible for the checks of multiraft-design §11.7 (epoch not
stale, no overlap with other initialized regions except those replaced).
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence

from multiraft.raft.errors import RaftFatal, SnapshotOutOfDate
from multiraft.raft.types import Snapshot, SnapshotMetadata
from multiraft.storage import keys, staging
from multiraft.storage.engine import Db, Dbs, Engine, Txn
from multiraft.storage.raft_storage import RaftStorage
from multiraft.storage.recovery import read_region_records
from multiraft.storage.staging import SnapshotError, StagedSnapshot
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
    "apply_staged",
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

log = logging.getLogger(__name__)


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
    """Stage a whole stream, then install it as region ``region_id`` (blocking; run it in a thread).

    :func:`multiraft.storage.staging.stage` then :func:`apply_staged` (``tombstones``,
    the phases); ``on_phase`` is also called with ``"staging"`` after each staging
    transaction and ``"staged"`` once the stream is complete.

    Raises:
        SnapshotError: the stream is malformed, incomplete or for another region,
            or the region is already Applying (run :func:`recover_interrupted`).
        SnapshotOutOfDate: the snapshot index is not past the region's truncated index.
    """
    hook = on_phase or _no_hook
    # Refuse before staging anything for a region that cannot take a snapshot now.
    if _is_applying(engine, region_id):
        raise SnapshotError(f"region {region_id} is already applying a snapshot; recover it first")
    staged = staging.stage(
        engine, region_id, chunks, txn_bytes=txn_bytes, on_flush=lambda: hook("staging")
    )
    hook("staged")
    return apply_staged(engine, staged, tombstones=tombstones, txn_bytes=txn_bytes,
                        delete_batch=delete_batch, on_phase=hook)  # fmt: skip


def apply_staged(
    engine: Engine,
    staged: StagedSnapshot,
    *,
    tombstones: Sequence[RegionLocalState] = (),
    txn_bytes: int = DEFAULT_TXN_BYTES,
    delete_batch: int = DEFAULT_DELETE_BATCH,
    on_phase: PhaseHook | None = None,
) -> SnapshotHeader:
    """Install a staged stream as its region (blocking; run it in a thread). Consumes ``staged``.

    ``tombstones`` are written with the Applying mark (regions this one replaces).
    ``on_phase`` is called after ``"applying"``, ``"cleared"``, ``"written"`` and
    ``"normal"`` (tests use it to interrupt). If the Applying mark does not commit,
    the staged stream is deleted and the region is as it was; once it has
    committed, the stream is the apply's redo log (see :func:`recover_interrupted`).

    Raises:
        SnapshotError: ``staged`` was already consumed, its parts are missing, or the
            region is already Applying.
        SnapshotOutOfDate: the snapshot index is not past the region's truncated index.
    """
    hook = on_phase or _no_hook
    staged.consume()
    try:
        _mark_applying(engine, staged, tombstones)
    except BaseException:
        # The region is untouched and the stream belongs to this apply alone.
        try:
            staging.delete_stream(engine, staged.region_id, staged.snapshot_id)
        except Exception as exc:  # keep the first error; recovery drops the stream at startup
            log.warning("region %d: staged snapshot %d not deleted: %s", staged.region_id,
                        staged.snapshot_id, exc)  # fmt: skip
        raise
    hook("applying")
    _finish(engine, staged.region_id, staged.prefix, txn_bytes, delete_batch, hook)
    return staged.header


def _no_hook(phase: str) -> None:
    pass


def _is_applying(engine: Engine, region_id: int) -> bool:
    with engine.read() as txn:
        raw = txn.get(keys.region_key(region_id), db=engine.dbs.region_state)
    return raw is not None and decode_region_local_state(raw).state == PeerState.Applying


def _mark_applying(
    engine: Engine, staged: StagedSnapshot, tombstones: Sequence[RegionLocalState]
) -> None:
    dbs = engine.dbs
    header = staged.header
    rid = header.region_id
    rkey = keys.region_key(rid)
    prefix = staged.prefix

    def mark(txn: Txn) -> None:
        raw = txn.get(rkey, db=dbs.region_state)
        old = decode_region_local_state(raw) if raw is not None else None
        if old is not None and old.state == PeerState.Applying:
            raise SnapshotError(f"region {rid} is already applying a snapshot; recover it first")
        # The first and the last part (small: header and footer) prove the stream is there.
        for seq in (0, staged.parts - 1):
            if txn.get(keys.staging_part_key(prefix, seq), db=dbs.snap_staging) is None:
                raise SnapshotError(
                    f"region {rid}: staged snapshot {staged.snapshot_id} lacks part {seq}"
                )
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
            keys.staging_part_key(prefix, keys.STAGING_PLAN_SEQ),
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
    engine: Engine,
    region_id: int,
    prefix: bytes,
    txn_bytes: int,
    delete_batch: int,
    hook: PhaseHook,
) -> None:
    """Steps 3 and 4 for the stream staged under ``prefix``; idempotent (recovery redoes it)."""
    dbs = engine.dbs
    with engine.read() as txn:
        raw_header = txn.get(keys.staging_part_key(prefix, 0), db=dbs.snap_staging)
        raw_plan = txn.get(keys.staging_part_key(prefix, keys.STAGING_PLAN_SEQ), db=dbs.snap_staging)
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
        step = functools.partial(_write_staged, dbs=dbs, region_id=region_id, prefix=prefix,
                                 seq=next_seq, txn_bytes=txn_bytes)  # fmt: skip
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
        start, end = keys.staging_prefix_range(prefix)
        delete_range(txn, dbs.snap_staging, start, end)

    engine.write(normal)
    hook("normal")


def _delete_data(txn: Txn, *, dbs: Dbs, start: bytes, end: bytes | None, limit: int) -> int:
    return delete_range(txn, dbs.data, start, end, limit)


def _write_staged(
    txn: Txn, *, dbs: Dbs, region_id: int, prefix: bytes, seq: int, txn_bytes: int
) -> int:
    """Write staged data chunks from ``seq`` on, up to about ``txn_bytes``; the next seq, or 0 at the end."""
    cur = txn.cursor(dbs.snap_staging)
    written = 0
    data = dbs.data
    if not cur.set_key(keys.staging_part_key(prefix, seq)):
        raise RecordCorrupted(f"region {region_id}: staged snapshot chunk {seq} is missing")
    for key, raw in cur.iternext():
        if key != keys.staging_part_key(prefix, seq):
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


def recover_interrupted(engine: Engine) -> list[int]:
    """Finish every snapshot apply a crash interrupted; drop all other staging. Startup only.

    Returns the ids of the regions it finished.

    Raises:
        RecordCorrupted: an Applying region has no staged stream with a plan, or several.
    """
    dbs = engine.dbs
    applying: list[int] = []
    planned: dict[int, list[bytes]] = {}  # region id -> prefixes of streams with a plan
    streams: list[bytes] = []  # every staging prefix, in key order
    with engine.read() as txn:
        for key, val in txn.cursor(dbs.region_state):
            if decode_region_local_state(val).state == PeerState.Applying:
                applying.append(keys.decode_region_key(key))
        # Keys only (the parts' values stay on their pages). A key minus its 8-byte seq is
        # its stream's prefix, for the region_id|snap_id|seq keys and the older region_id|seq.
        for key in txn.cursor(dbs.snap_staging).iternext(keys=True, values=False):
            prefix = key[:-8]
            if not streams or streams[-1] != prefix:
                streams.append(prefix)
            if key[-8:] == _PLAN_SUFFIX:
                planned.setdefault(keys.decode_region_key(key[:8]), []).append(prefix)
    finished: set[bytes] = set()
    for rid in applying:
        prefixes = planned.get(rid, [])
        if len(prefixes) != 1:
            raise RecordCorrupted(
                f"region {rid} is Applying with {len(prefixes)} planned snapshot streams, not one"
            )
        _finish(engine, rid, prefixes[0], DEFAULT_TXN_BYTES, DEFAULT_DELETE_BATCH, _no_hook)
        finished.add(prefixes[0])
    for prefix in streams:
        if prefix not in finished:
            # A receive or apply that never reached its mark, or a plan whose region is no
            # longer Applying (finished, then superseded before its staging went): all dead.
            start, end = keys.staging_prefix_range(prefix)
            engine.write(functools.partial(_delete_staging, db=dbs.snap_staging, start=start,
                                           end=end))  # fmt: skip
    return applying


_PLAN_SUFFIX = keys.staging_part_key(b"", keys.STAGING_PLAN_SEQ)


def _delete_staging(txn: Txn, *, db: Db, start: bytes, end: bytes | None) -> int:
    return delete_range(txn, db, start, end)
