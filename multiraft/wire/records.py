"""Byte forms of the records a store persists in LMDB, and of region-snapshot chunks.

Theory of operation
-------------------
Two encodings, chosen by how hot the record is:

* **Fixed binary structs** for what every ready round writes, many times:
  log entries, ``RaftLocalState`` (hard state + last index), ``ApplyState``
  and ``HardState``. An entry is a 21-byte header ``>BQQI`` (flags, term,
  index, ``len(context)``) followed by the context and then the data, so
  encoding is one ``struct.pack`` and a concatenation, and decoding one
  ``unpack_from`` and two slices: no CBOR on the hot path. The flags byte
  holds the entry type in bits 0-1 and ``sync_log`` in bit 7; bits 2-6 are
  reserved and must be zero. The state structs start with a one-byte format
  tag so that a later layout can be told apart from this one.
* **CBOR arrays** (positional, no field names) for the rare records: conf
  state, region local state (with the region, its epoch and its peers), store
  identity, and the parts (header, data, footer) of a region snapshot stream.

Decoding is strict: a wrong length, a reserved bit, an unknown enum value, a
field of the wrong CBOR type, a negative or too-large integer, trailing bytes
or malformed CBOR raise :class:`RecordCorrupted` with what was expected.
Nothing else escapes a decoder, so a caller needs one ``except``. A record read
back from disk that fails to decode means the data directory is damaged; the
store must stop rather than guess.

This is the only storage-side module that imports ``cbor2`` (the project rule:
only :mod:`multiraft.wire` does).
"""

from __future__ import annotations

import io
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2

from multiraft.raft.types import ConfState, Entry, EntryType, HardState
from multiraft.wire.errors import WireError
from regions.local_state import ApplyState, PeerState, RaftLocalState, RegionLocalState, StoreIdent
from regions.region import Peer, PeerRole, Region, RegionEpoch

__all__ = [
    "ENTRY_HEADER_SIZE",
    "RecordCorrupted",
    "SnapshotData",
    "SnapshotFooter",
    "SnapshotHeader",
    "SnapshotPart",
    "decode_apply_state",
    "decode_conf_state",
    "decode_entry",
    "decode_entry_term",
    "decode_hard_state",
    "decode_key_ranges",
    "decode_raft_local_state",
    "decode_region",
    "decode_region_local_state",
    "decode_snapshot_part",
    "decode_store_ident",
    "decode_u64_list",
    "encode_apply_state",
    "encode_conf_state",
    "encode_entry",
    "encode_hard_state",
    "encode_key_ranges",
    "encode_raft_local_state",
    "encode_region",
    "encode_region_local_state",
    "encode_snapshot_part",
    "encode_store_ident",
    "encode_u64_list",
]

_U64_MAX = 2**64 - 1


class RecordCorrupted(WireError):
    """A persisted record (or a snapshot chunk) does not decode: the bytes are damaged.

    A :class:`~multiraft.wire.errors.WireError` because snapshot chunks arrive
    from the network too; for a record read from disk it means the data
    directory is corrupt and the store must stop.
    """


# ----------------------------------------------------------------------
# Log entries: the hot path.

_ENTRY_HEADER = struct.Struct(">BQQI")
_entry_pack = _ENTRY_HEADER.pack
_entry_unpack = _ENTRY_HEADER.unpack_from
#: Bytes before the context in an encoded entry.
ENTRY_HEADER_SIZE = _ENTRY_HEADER.size
_SYNC_LOG = 0x80
_TYPE_MASK = 0x03
_RESERVED = 0x7C
#: Indexed by the flags' type bits; an index without a type is corruption.
_ENTRY_TYPES: tuple[EntryType | None, ...] = (
    EntryType.EntryNormal,
    EntryType.EntryConfChange,
    EntryType.EntryConfChangeV2,
    None,
)
_TERM_AT = struct.Struct(">BQ").unpack_from


def encode_entry(e: Entry) -> bytes:
    """The stored form of a log entry: ``>BQQI`` header, context, data."""
    ctx = e.context
    flags = e.entry_type | _SYNC_LOG if e.sync_log else e.entry_type
    if ctx:
        return _entry_pack(flags, e.term, e.index, len(ctx)) + ctx + e.data
    return _entry_pack(flags, e.term, e.index, 0) + e.data


def decode_entry(buf: bytes) -> Entry:
    """The entry :func:`encode_entry` wrote.

    Raises:
        RecordCorrupted: too short, reserved flag bits, unknown type, or a
            context length past the end.
    """
    n = len(buf)
    if n < ENTRY_HEADER_SIZE:
        raise RecordCorrupted(
            f"entry record of {n} bytes, shorter than its {ENTRY_HEADER_SIZE}-byte header"
        )
    flags, term, index, clen = _entry_unpack(buf)
    etype = _ENTRY_TYPES[flags & _TYPE_MASK]
    if etype is None or flags & _RESERVED:
        raise RecordCorrupted(f"entry {index}: bad flags byte {flags:#04x}")
    end = ENTRY_HEADER_SIZE + clen
    if end > n:
        raise RecordCorrupted(
            f"entry {index}: context of {clen} bytes runs past the {n}-byte record"
        )
    return Entry(etype, term, index, buf[end:], buf[ENTRY_HEADER_SIZE:end], bool(flags & _SYNC_LOG))


def decode_entry_term(buf: bytes) -> tuple[int, int]:
    """``(term, index)`` of an encoded entry without building it (the ``term()`` path).

    Raises:
        RecordCorrupted: the header is short or its flags are invalid.
    """
    if len(buf) < ENTRY_HEADER_SIZE:
        raise RecordCorrupted(f"entry record of {len(buf)} bytes, shorter than its header")
    flags, term, index, clen = _entry_unpack(buf)
    if flags & _RESERVED or flags & _TYPE_MASK == _TYPE_MASK or ENTRY_HEADER_SIZE + clen > len(buf):
        raise RecordCorrupted(f"entry {index}: bad header")
    return term, index


# ----------------------------------------------------------------------
# Fixed-size state records, written every round.

_TAG_HARD_STATE = 1
_TAG_RAFT_LOCAL_STATE = 1
_TAG_APPLY_STATE = 1
_HARD = struct.Struct(">BQQQ")
_RAFT_LOCAL = struct.Struct(">BQQQQ")
_APPLY = struct.Struct(">BQQQ")
_hard_pack = _HARD.pack
_raft_local_pack = _RAFT_LOCAL.pack
_apply_pack = _APPLY.pack


def _fixed(buf: bytes, st: struct.Struct, tag: int, what: str) -> tuple[int, ...]:
    if len(buf) != st.size:
        raise RecordCorrupted(f"{what} record of {len(buf)} bytes, expected {st.size}")
    fields: tuple[int, ...] = st.unpack(buf)
    if fields[0] != tag:
        raise RecordCorrupted(f"{what} record has format tag {fields[0]}, expected {tag}")
    return fields


def encode_hard_state(hs: HardState) -> bytes:
    return _hard_pack(_TAG_HARD_STATE, hs.term, hs.vote, hs.commit)


def decode_hard_state(buf: bytes) -> HardState:
    _, term, vote, commit = _fixed(buf, _HARD, _TAG_HARD_STATE, "hard state")
    return HardState(term, vote, commit)


def encode_raft_local_state(hs: HardState, last_index: int) -> bytes:
    """``RaftLocalState{hard_state, last_index}``, from its parts (no object needed)."""
    return _raft_local_pack(_TAG_RAFT_LOCAL_STATE, hs.term, hs.vote, hs.commit, last_index)


def decode_raft_local_state(buf: bytes) -> RaftLocalState:
    _, term, vote, commit, last = _fixed(
        buf, _RAFT_LOCAL, _TAG_RAFT_LOCAL_STATE, "raft local state"
    )
    return RaftLocalState(HardState(term, vote, commit), last)


def encode_apply_state(st: ApplyState) -> bytes:
    return _apply_pack(_TAG_APPLY_STATE, st.applied_index, st.truncated_index, st.truncated_term)


def decode_apply_state(buf: bytes) -> ApplyState:
    _, applied, tindex, tterm = _fixed(buf, _APPLY, _TAG_APPLY_STATE, "apply state")
    return ApplyState(applied, tindex, tterm)


# ----------------------------------------------------------------------
# CBOR helpers: strict shape checks.


def _dumps(obj: object) -> bytes:
    return cbor2.dumps(obj)


def _loads(buf: bytes, what: str) -> Any:
    fp = io.BytesIO(buf)
    try:
        obj = cbor2.CBORDecoder(fp).decode()
    except (
        cbor2.CBORDecodeError,
        ValueError,
        TypeError,
        OverflowError,
        RecursionError,
        MemoryError,
    ) as exc:
        raise RecordCorrupted(f"{what}: malformed CBOR ({exc})") from None
    if fp.tell() != len(buf):
        raise RecordCorrupted(f"{what}: {len(buf) - fp.tell()} trailing bytes after the record")
    return obj


def _array(obj: Any, n: int, what: str) -> list[Any]:
    if not isinstance(obj, list) or len(obj) != n:
        got = f"array of {len(obj)}" if isinstance(obj, list) else type(obj).__name__
        raise RecordCorrupted(f"{what}: expected an array of {n}, got {got}")
    return obj


def _u64(v: Any, what: str) -> int:
    # bool is an int subclass; a CBOR true where a number belongs is corruption.
    if type(v) is not int or not 0 <= v <= _U64_MAX:
        raise RecordCorrupted(f"{what}: expected an unsigned 64-bit integer, got {v!r}")
    return v


def _bytes(v: Any, what: str) -> bytes:
    if type(v) is not bytes:
        raise RecordCorrupted(f"{what}: expected a byte string, got {type(v).__name__}")
    return v


def _bool(v: Any, what: str) -> bool:
    if type(v) is not bool:
        raise RecordCorrupted(f"{what}: expected a boolean, got {v!r}")
    return v


def _u64s(v: Any, what: str) -> list[int]:
    if not isinstance(v, list):
        raise RecordCorrupted(f"{what}: expected an array of integers, got {type(v).__name__}")
    return [_u64(x, what) for x in v]


def _enum(v: Any, cls: Callable[[int], Any], n: int, what: str) -> Any:
    if type(v) is not int or not 0 <= v < n:
        raise RecordCorrupted(f"{what}: unknown value {v!r}")
    return cls(v)


def encode_key_ranges(ranges: Sequence[tuple[bytes, bytes]]) -> bytes:
    """A CBOR array of ``[start, end]`` byte-string pairs (an empty end: unbounded)."""
    return _dumps([[s, e] for s, e in ranges])


def decode_key_ranges(buf: bytes) -> list[tuple[bytes, bytes]]:
    obj = _loads(buf, "key ranges")
    if not isinstance(obj, list):
        raise RecordCorrupted("key ranges: expected an array")
    out = []
    for item in obj:
        s, e = _array(item, 2, "key range")
        out.append((_bytes(s, "key range start"), _bytes(e, "key range end")))
    return out


def encode_u64_list(values: Sequence[int]) -> bytes:
    """A CBOR array of unsigned integers (small bookkeeping records)."""
    return _dumps(list(values))


def decode_u64_list(buf: bytes) -> list[int]:
    return _u64s(_loads(buf, "integer list"), "integer list")


# ----------------------------------------------------------------------
# ConfState, Region, RegionLocalState, StoreIdent.


def _conf_state_obj(cs: ConfState) -> list[Any]:
    return [cs.voters, cs.learners, cs.voters_outgoing, cs.learners_next, cs.auto_leave]


def _conf_state_from(obj: Any) -> ConfState:
    v, lr, vo, ln, al = _array(obj, 5, "conf state")
    return ConfState(
        voters=_u64s(v, "conf state voters"),
        learners=_u64s(lr, "conf state learners"),
        voters_outgoing=_u64s(vo, "conf state voters_outgoing"),
        learners_next=_u64s(ln, "conf state learners_next"),
        auto_leave=_bool(al, "conf state auto_leave"),
    )


def encode_conf_state(cs: ConfState) -> bytes:
    return _dumps(_conf_state_obj(cs))


def decode_conf_state(buf: bytes) -> ConfState:
    return _conf_state_from(_loads(buf, "conf state"))


def _region_obj(r: Region) -> list[Any]:
    return [
        r.id,
        r.start_key,
        r.end_key,
        [r.epoch.conf_ver, r.epoch.version],
        [[p.id, p.store_id, int(p.role)] for p in r.peers],
    ]


def _region_from(obj: Any) -> Region:
    rid, start, end, epoch, peers = _array(obj, 5, "region")
    conf_ver, version = _array(epoch, 2, "region epoch")
    if not isinstance(peers, list):
        raise RecordCorrupted("region peers: expected an array")
    plist = []
    for p in peers:
        pid, store, role = _array(p, 3, "peer")
        plist.append(
            Peer(
                _u64(pid, "peer id"),
                _u64(store, "peer store id"),
                _enum(role, PeerRole, 4, "peer role"),
            )
        )
    return Region(
        id=_u64(rid, "region id"),
        start_key=_bytes(start, "region start_key"),
        end_key=_bytes(end, "region end_key"),
        epoch=RegionEpoch(_u64(conf_ver, "epoch conf_ver"), _u64(version, "epoch version")),
        peers=plist,
    )


def encode_region(r: Region) -> bytes:
    return _dumps(_region_obj(r))


def decode_region(buf: bytes) -> Region:
    return _region_from(_loads(buf, "region"))


def encode_region_local_state(st: RegionLocalState) -> bytes:
    return _dumps([int(st.state), _region_obj(st.region)])


def decode_region_local_state(buf: bytes) -> RegionLocalState:
    state, region = _array(_loads(buf, "region local state"), 2, "region local state")
    return RegionLocalState(_enum(state, PeerState, 3, "peer state"), _region_from(region))


def encode_store_ident(ident: StoreIdent) -> bytes:
    return _dumps([ident.cluster_id, ident.store_id])


def decode_store_ident(buf: bytes) -> StoreIdent:
    cluster, store = _array(_loads(buf, "store ident"), 2, "store ident")
    return StoreIdent(_u64(cluster, "cluster id"), _u64(store, "store id"))


# ----------------------------------------------------------------------
# Region snapshot parts.
#
# A region snapshot is a stream of parts: one header, any number of data
# parts numbered 1, 2, ..., then one footer whose checksum covers every data
# part's bytes in order. Each part is a CBOR array ``[version, kind, ...]``.
# On the network each part's bytes travel as the ``data`` of a transport
# ``SnapshotChunk`` (multiraft.wire.codec); this module owns their content.

_SNAP_VERSION = 1
_KIND_HEADER, _KIND_DATA, _KIND_FOOTER = 0, 1, 2


@dataclass(slots=True, frozen=True)
class SnapshotHeader:
    """What a snapshot is of: the region, and the applied index/term its data reflects."""

    region_id: int
    region: Region
    index: int
    term: int
    conf_state: ConfState = field(default_factory=ConfState)


@dataclass(slots=True, frozen=True)
class SnapshotData:
    """Chunk ``seq`` (from 1) of the region's data: ``(key, value)`` pairs in key order."""

    seq: int
    pairs: list[tuple[bytes, bytes]]


@dataclass(slots=True, frozen=True)
class SnapshotFooter:
    """The end of the stream: counts, and ``crc32`` over every data chunk's encoded bytes."""

    data_chunks: int
    keys: int
    checksum: int


SnapshotPart = SnapshotHeader | SnapshotData | SnapshotFooter


def encode_snapshot_part(chunk: SnapshotPart) -> bytes:
    """The bytes of one snapshot part (header, data or footer)."""
    if isinstance(chunk, SnapshotData):
        flat: list[bytes] = [x for kv in chunk.pairs for x in kv]
        return _dumps([_SNAP_VERSION, _KIND_DATA, chunk.seq, flat])
    if isinstance(chunk, SnapshotHeader):
        return _dumps(
            [
                _SNAP_VERSION,
                _KIND_HEADER,
                chunk.region_id,
                _region_obj(chunk.region),
                chunk.index,
                chunk.term,
                _conf_state_obj(chunk.conf_state),
            ]
        )
    return _dumps([_SNAP_VERSION, _KIND_FOOTER, chunk.data_chunks, chunk.keys, chunk.checksum])


def decode_snapshot_part(buf: bytes) -> SnapshotPart:
    """The part :func:`encode_snapshot_part` wrote.

    Raises:
        RecordCorrupted: malformed CBOR, unknown version or kind, wrong shapes.
    """
    obj = _loads(buf, "snapshot chunk")
    if not isinstance(obj, list) or len(obj) < 2:
        raise RecordCorrupted("snapshot chunk: expected an array [version, kind, ...]")
    if obj[0] != _SNAP_VERSION or type(obj[0]) is not int:
        raise RecordCorrupted(f"snapshot chunk: unknown version {obj[0]!r}")
    kind = obj[1]
    if kind == _KIND_DATA and type(kind) is int:
        _, _, seq, flat = _array(obj, 4, "snapshot data chunk")
        if not isinstance(flat, list) or len(flat) % 2:
            raise RecordCorrupted("snapshot data chunk: expected an even array of byte strings")
        for x in flat:
            if type(x) is not bytes:
                raise RecordCorrupted("snapshot data chunk: a key or value is not a byte string")
        it = iter(flat)
        return SnapshotData(_u64(seq, "snapshot chunk seq"), list(zip(it, it)))
    if kind == _KIND_HEADER and type(kind) is int:
        _, _, rid, region, index, term, cs = _array(obj, 7, "snapshot header")
        return SnapshotHeader(
            _u64(rid, "snapshot region id"),
            _region_from(region),
            _u64(index, "snapshot index"),
            _u64(term, "snapshot term"),
            _conf_state_from(cs),
        )
    if kind == _KIND_FOOTER and type(kind) is int:
        _, _, chunks, keys, checksum = _array(obj, 5, "snapshot footer")
        return SnapshotFooter(
            _u64(chunks, "snapshot footer chunks"),
            _u64(keys, "snapshot footer keys"),
            _u64(checksum, "snapshot footer checksum"),
        )
    raise RecordCorrupted(f"snapshot chunk: unknown kind {kind!r}")
