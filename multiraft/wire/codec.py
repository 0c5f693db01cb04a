"""CBOR codecs for the Raft types, raft envelopes and batches, snapshot chunks and
the connection-level payloads; plus dispatch by frame kind.

Why the payloads are *flat* arrays: with cbor2 6.x every nested container costs
about 0.7 us to encode (a flat item about 0.07 us), so a MsgAppend of 10 entries
as nested arrays spends most of its time on array headers. The hot payloads are
therefore one flat CBOR array, read back with a cursor; only rare parts (a
snapshot's metadata) nest.

Schema (positional; ``u`` = u64, ``i`` = i64, ``b`` = bytes, ``?`` = bool)::

  MESSAGE (16 items, then its entries, then its snapshot if any)
    0 msg_type u   1 to u   2 from u   3 term u   4 log_term u   5 index u
    6 commit u   7 commit_term u   8 request_snapshot u   9 reject_hint u
    10 deprecated_priority u   11 priority i   12 reject ?   13 context b
    14 flags u (bit 0: entries in full form; bit 1: a SNAPSHOT array follows)
    15 n_entries u
    entries, short form (every entry Normal, no context, no sync_log): term, index, data
    entries, full form: entry_type, term, index, data, context, sync_log
  SNAPSHOT  [data b, index u, term u, voters [u], learners [u],
             voters_outgoing [u], learners_next [u], auto_leave ?]
  ENVELOPE  (12 items, then a MESSAGE)
    0 region_id   1 from.id   2 from.store_id   3 from.role   4 to.id
    5 to.store_id   6 to.role   7 epoch.conf_ver   8 epoch.version
    9 is_tombstone ?   10 start_key b   11 end_key b
  RAFT_BATCH     [from_store_id u, n_envelopes u, ENVELOPE*]
  SNAPSHOT_CHUNK [region_id u, snapshot_id u, seq u, last ?, data b, ENVELOPE?]
  SNAPSHOT_ACK   [region_id u, snapshot_id u, seq u, status u, reason str]
  HELLO          [store_id u, cluster_id u, address str]
  ERROR          [code u, message str]
  standalone: ENTRY [entry_type, term, index, data, context, sync_log],
    HARD_STATE [term, vote, commit], CONF_STATE [voters, learners,
    voters_outgoing, learners_next, auto_leave], SNAPSHOT as above,
    MESSAGE as the flat array above.

KV and admin requests/responses are in :mod:`multiraft.wire.request_codec`;
placement requests/responses in :mod:`multiraft.wire.placement_codec`.

Encoders trust their typed inputs (the values come from our own code); the
decoders are the trust boundary and check every field: exact types (a bool is
not an int), non-negative u64s, enum values in range, declared counts against
the items actually present (never allocating from a count), and nothing left
over. They raise only :class:`~multiraft.wire.errors.WireError` subclasses.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any, NoReturn

from multiraft.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Snapshot,
    SnapshotMetadata,
)
from multiraft.wire import _cbor as c
from multiraft.wire import placement_codec as pc
from multiraft.wire import request_codec as rq
from multiraft.wire._cbor import guard
from multiraft.wire.errors import SchemaError
from multiraft.wire.frames import FrameKind
from multiraft.wire.messages import (
    AdminRequest,
    AdminResponse,
    ErrorCode,
    ErrorNotice,
    Hello,
    KvRequest,
    KvResponse,
    RaftBatch,
    RaftEnvelope,
    SnapshotAck,
    SnapshotAckStatus,
    SnapshotChunk,
)
from multiraft.wire.placement_messages import PlacementRequest, PlacementResponse

_MSG_TYPES: dict[int, MessageType] = {t.value: t for t in MessageType}
_ENTRY_TYPES: dict[int, EntryType] = {t.value: t for t in EntryType}
_ACK_STATUS: dict[int, SnapshotAckStatus] = {s.value: s for s in SnapshotAckStatus}
_ERROR_CODES: dict[int, ErrorCode] = {s.value: s for s in ErrorCode}
_NORMAL = EntryType.EntryNormal

_MSG_N = 16
_MSG_ROW = (int,) * 12 + (bool, bytes, int, int)
_MSG_NAMES = ("msg_type", "to", "from", "term", "log_term", "index", "commit", "commit_term",
              "request_snapshot", "reject_hint", "deprecated_priority", "priority", "reject",
              "context", "flags", "n_entries")  # fmt: skip
_SHORT_ROW = (int, int, bytes)
_FULL_ROW = (int, int, int, bytes, bytes, bool)
_ENV_N = 12
_ENV_MSG_N = _ENV_N + _MSG_N
_ENV_MSG_ROW = (int,) * 9 + (bool, bytes, bytes) + _MSG_ROW
_ENV_MSG_NAMES = ("region_id", "from_peer.id", "from_peer.store_id", "from_peer.role",
                  "to_peer.id", "to_peer.store_id", "to_peer.role", "epoch.conf_ver",
                  "epoch.version", "is_tombstone", "start_key", "end_key", *_MSG_NAMES)  # fmt: skip
#: Positions of the u64 fields in the envelope + message head (roles, msg_type,
#: priority and flags have their own range checks).
_U64_FIELDS = (0, 1, 2, 4, 5, 7, 8, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 27)
_TYPE_WORDS = {int: "an int", bool: "a bool", bytes: "bytes"}
#: The head a standalone message is decoded under (see _message_root).
_NO_ENVELOPE: list[Any] = [0, 0, 0, 0, 0, 0, 0, 0, 0, False, b"", b""]
# Bound methods of the intern caches (which are cleared, never rebound).
_peer_get = c.peer_cache.get
_epoch_get = c.epoch_cache.get
_SALT = c.CACHE_SALT
_FLAG_FULL = 1
_FLAG_SNAPSHOT = 2


# -- snapshot, conf state, hard state, entry --------------------------------------------------


def _conf_state_items(cs: ConfState) -> list[Any]:
    return [cs.voters, cs.learners, cs.voters_outgoing, cs.learners_next, cs.auto_leave]


def _conf_state_from(a: list[Any], at: int, what: str) -> ConfState:
    return ConfState(
        c.u64_list(a[at], what, "voters"),
        c.u64_list(a[at + 1], what, "learners"),
        c.u64_list(a[at + 2], what, "voters_outgoing"),
        c.u64_list(a[at + 3], what, "learners_next"),
        c.boolean(a[at + 4], what, "auto_leave"),
    )


def _snapshot_array(s: Snapshot) -> list[Any]:
    md = s.metadata
    return [s.data, md.index, md.term, *_conf_state_items(md.conf_state)]


def _snapshot_from(v: object, what: str = "Snapshot") -> Snapshot:
    a = c.exact_len(c.array(v, what, "snapshot"), 8, what)
    md = SnapshotMetadata(
        _conf_state_from(a, 3, what), c.u64(a[1], what, "index"), c.u64(a[2], what, "term")
    )
    return Snapshot(c.byt(a[0], what, "data"), md)


def encode_snapshot(s: Snapshot) -> bytes:
    return c.dumps(_snapshot_array(s))


def decode_snapshot(payload: bytes) -> Snapshot:
    return guard("Snapshot", _snapshot_from, c.loads(payload, "Snapshot"))


def encode_conf_state(cs: ConfState) -> bytes:
    return c.dumps(_conf_state_items(cs))


def decode_conf_state(payload: bytes) -> ConfState:
    def build(v: object) -> ConfState:
        return _conf_state_from(c.exact_len(c.array(v, "ConfState", "root"), 5, "ConfState"), 0,
                                "ConfState")  # fmt: skip

    return guard("ConfState", build, c.loads(payload, "ConfState"))


def encode_hard_state(hs: HardState) -> bytes:
    return c.dumps((hs.term, hs.vote, hs.commit))


def decode_hard_state(payload: bytes) -> HardState:
    def build(v: object) -> HardState:
        w = "HardState"
        a = c.exact_len(c.array(v, w, "root"), 3, w)
        return HardState(c.u64(a[0], w, "term"), c.u64(a[1], w, "vote"), c.u64(a[2], w, "commit"))

    return guard("HardState", build, c.loads(payload, "HardState"))


def encode_entry(e: Entry) -> bytes:
    return c.dumps((e.entry_type, e.term, e.index, e.data, e.context, e.sync_log))


def decode_entry(payload: bytes) -> Entry:
    def build(v: object) -> Entry:
        a = c.array(v, "Entry", "root")
        entries, end = _take_entries(a, 0, 1, True, "Entry")
        if end != len(a):
            raise SchemaError("Entry", f"expected 6 fields, got {len(a)}")
        return entries[0]

    return guard("Entry", build, c.loads(payload, "Entry"))


# -- messages ---------------------------------------------------------------------------------


def _put_message(out: list[Any], m: Message) -> None:
    # Plain attribute access: CPython 3.11 specialises it, and it is 2-3x cheaper
    # than operator.attrgetter or itertools.chain over per-entry tuples.
    out += (m.msg_type, m.to, m.from_, m.term, m.log_term, m.index, m.commit, m.commit_term,
            m.request_snapshot, m.reject_hint, m.deprecated_priority, m.priority, m.reject,
            m.context)  # fmt: skip
    ents = m.entries
    snap = m.snapshot
    flags = 0 if snap is None else _FLAG_SNAPSHOT
    head = len(out)
    out += (flags, len(ents))
    for e in ents:
        if e.entry_type or e.context or e.sync_log:
            break  # a rare entry: redo the whole list in the full form
        out += (e.term, e.index, e.data)
    else:
        if snap is not None:
            out.append(_snapshot_array(snap))
        return
    del out[head:]
    out += (flags | _FLAG_FULL, len(ents))
    for e in ents:
        out += (e.entry_type, e.term, e.index, e.data, e.context, e.sync_log)
    if snap is not None:
        out.append(_snapshot_array(snap))


def _take_entries(a: list[Any], p: int, n: int, full: int, what: str) -> tuple[list[Entry], int]:
    """The ``n`` entries stored flat from ``a[p]``, and the index after them."""
    if n == 1 and not full and p + 3 <= len(a):
        # One short entry (a lightly loaded leader's usual append): skip the column work.
        term, index, data = a[p], a[p + 1], a[p + 2]
        if type(term) is int and type(index) is int and type(data) is bytes and term >= 0 <= index:
            return [Entry(_NORMAL, term, index, data)], p + 3
    width = 6 if full else 3
    end = p + width * n
    if end > len(a):  # checked before any allocation sized by n
        raise SchemaError(what, f"declares {n} entries but only {len(a) - p} items follow")
    seg = a[p:end]
    if tuple(map(type, seg)) != (_FULL_ROW if full else _SHORT_ROW) * n:
        raise SchemaError(what, f"entries must be {'full' if full else 'short'}-form rows")
    if full:
        kinds, terms, idxs = seg[0::6], seg[1::6], seg[2::6]
        # min/max, not a set: hashing attacker-chosen ints invites collision floods.
        if min(kinds) < 0 or max(kinds) >= len(_ENTRY_TYPES):
            raise SchemaError(what, f"entry types must be in {sorted(_ENTRY_TYPES)}")
        if min(terms) < 0 or min(idxs) < 0:
            raise SchemaError(what, "entry term and index must be u64")
        et = [_ENTRY_TYPES[k] for k in kinds]
        return list(map(Entry, et, terms, idxs, seg[3::6], seg[4::6], seg[5::6])), end
    terms, idxs = seg[0::3], seg[1::3]
    if min(terms) < 0 or min(idxs) < 0:
        raise SchemaError(what, "entry term and index must be u64")
    return list(map(Entry, repeat(_NORMAL, n), terms, idxs, seg[2::3])), end


def encode_message(m: Message) -> bytes:
    out: list[Any] = []
    _put_message(out, m)
    return c.dumps(out)


def _message_root(v: object) -> Message:
    # A standalone message is read as an envelope with a neutral head, so that the
    # message layout and its checks live in one function (_take_envelope).
    a = _NO_ENVELOPE + c.array(v, "Message", "root")
    env, end = _take_envelope(a, 0, "Message")
    if end != len(a):
        raise SchemaError("Message", f"{len(a) - end} items after the message")
    return env.message


def decode_message(payload: bytes) -> Message:
    return guard("Message", _message_root, c.loads(payload, "Message"))


# -- envelopes and batches --------------------------------------------------------------------


def _put_envelope(out: list[Any], env: RaftEnvelope) -> None:
    f, t, ep = env.from_peer, env.to_peer, env.region_epoch
    out += (env.region_id, f.id, f.store_id, f.role, t.id, t.store_id, t.role, ep.conf_ver,
            ep.version, env.is_tombstone, env.start_key, env.end_key)  # fmt: skip
    _put_message(out, env.message)


def _row_error(h: list[Any], what: str) -> NoReturn:
    """Name the first missing or mistyped field of an envelope + message head."""
    if len(h) < _ENV_MSG_N:
        raise SchemaError(what, f"array ends before field {_ENV_MSG_NAMES[len(h)]}")
    bad = next(i for i, (v, t) in enumerate(zip(h, _ENV_MSG_ROW)) if type(v) is not t)
    c.fail(what, _ENV_MSG_NAMES[bad], _TYPE_WORDS[_ENV_MSG_ROW[bad]], h[bad])


def _take_envelope(a: list[Any], p: int, what: str) -> tuple[RaftEnvelope, int]:
    """The envelope stored flat from ``a[p]`` (with its message), and the index after it.

    The hottest decoder: one slice, one type check and one sign check cover the 28
    fixed fields of envelope and message; everything is inlined but the entries.
    """
    h = a[p : p + _ENV_MSG_N]
    if tuple(map(type, h)) != _ENV_MSG_ROW:
        _row_error(h, what)
    (rid, fid, fsid, frole, tid, tsid, trole, cv, ver, tomb, sk, ek,
     mt, to, frm, term, lt, idx, com, ct, rs, rh, dp, prio, rej, ctx, flags, n) = h  # fmt: skip
    if min(rid, fid, fsid, tid, tsid, cv, ver, to, frm, term, lt, idx, com, ct, rs, rh, dp, n) < 0:
        bad = next(i for i in _U64_FIELDS if h[i] < 0)
        c.fail(what, _ENV_MSG_NAMES[bad], "a u64", h[bad])
    msg_type = _MSG_TYPES.get(mt)
    if msg_type is None:
        c.fail(what, "msg_type", f"one of 0..{len(_MSG_TYPES) - 1}", mt)
    if not c.I64_MIN <= prio < c.I64_LIMIT:
        c.fail(what, "priority", "an i64", prio)
    if not 0 <= flags <= _FLAG_FULL | _FLAG_SNAPSHOT:
        c.fail(what, "flags", "0..3", flags)
    p += _ENV_MSG_N
    if n:
        entries, p = _take_entries(a, p, n, flags & _FLAG_FULL, what)
    else:
        entries = []
    snapshot = None
    if flags & _FLAG_SNAPSHOT:
        if p >= len(a):
            raise SchemaError(what, "flags announce a snapshot but the array ends")
        snapshot = _snapshot_from(a[p], what)
        p += 1
    m = Message(msg_type, to, frm, term, lt, idx, entries, com, ct, snapshot, rs, rej, rh, ctx, dp,
                prio)  # fmt: skip
    # Interned peers and epochs: a dict hit instead of building a frozen dataclass.
    from_peer = _peer_get((_SALT, fid, fsid, frole)) or c.peer(fid, fsid, frole, what)
    to_peer = _peer_get((_SALT, tid, tsid, trole)) or c.peer(tid, tsid, trole, what)
    epoch = _epoch_get((_SALT, cv, ver)) or c.epoch(cv, ver)
    return RaftEnvelope(rid, from_peer, to_peer, epoch, m, tomb, sk, ek), p


def encode_envelope(env: RaftEnvelope) -> bytes:
    out: list[Any] = []
    _put_envelope(out, env)
    return c.dumps(out)


def _envelope_root(v: object) -> RaftEnvelope:
    a = c.array(v, "RaftEnvelope", "root")
    env, end = _take_envelope(a, 0, "RaftEnvelope")
    if end != len(a):
        raise SchemaError("RaftEnvelope", f"{len(a) - end} items after the envelope")
    return env


def decode_envelope(payload: bytes) -> RaftEnvelope:
    return guard("RaftEnvelope", _envelope_root, c.loads(payload, "RaftEnvelope"))


def encode_raft_batch(batch: RaftBatch) -> bytes:
    """The RAFT_BATCH payload: ``[from_store_id, n, ENVELOPE*]``, one flat array."""
    envs = batch.envelopes
    out: list[Any] = [batch.from_store_id, len(envs)]
    for env in envs:
        _put_envelope(out, env)
    return c.dumps(out)


def _batch_root(v: object) -> RaftBatch:
    w = "RaftBatch"
    a = c.array(v, w, "root")
    if len(a) < 2:
        raise SchemaError(w, f"expected [from_store_id, n, envelopes...], got {len(a)} items")
    store, n = c.u64(a[0], w, "from_store_id"), c.u64(a[1], w, "n_envelopes")
    if n * _ENV_MSG_N > len(a) - 2:  # a cheap bound before looping n times
        raise SchemaError(w, f"declares {n} envelopes but has only {len(a) - 2} items")
    envs = []
    p = 2
    for _ in range(n):
        env, p = _take_envelope(a, p, w)
        envs.append(env)
    if p != len(a):
        raise SchemaError(w, f"{len(a) - p} items after the last envelope")
    return RaftBatch(store, envs)


def decode_raft_batch(payload: bytes) -> RaftBatch:
    return guard("RaftBatch", _batch_root, c.loads(payload, "RaftBatch"))


# -- snapshot chunks, acks, hello, error notices ----------------------------------------------


def encode_snapshot_chunk(ch: SnapshotChunk) -> bytes:
    out: list[Any] = [ch.region_id, ch.snapshot_id, ch.seq, ch.last, ch.data]
    if ch.envelope is not None:
        _put_envelope(out, ch.envelope)
    return c.dumps(out)


def _chunk_root(v: object) -> SnapshotChunk:
    w = "SnapshotChunk"
    a = c.array(v, w, "root")
    if len(a) < 5:
        raise SchemaError(w, f"expected at least 5 fields, got {len(a)}")
    env = None
    if len(a) > 5:
        env, end = _take_envelope(a, 5, w)
        if end != len(a):
            raise SchemaError(w, f"{len(a) - end} items after the envelope")
    return SnapshotChunk(
        c.u64(a[0], w, "region_id"), c.u64(a[1], w, "snapshot_id"), c.u64(a[2], w, "seq"),
        c.byt(a[4], w, "data"), c.boolean(a[3], w, "last"), env,
    )  # fmt: skip


def decode_snapshot_chunk(payload: bytes) -> SnapshotChunk:
    return guard("SnapshotChunk", _chunk_root, c.loads(payload, "SnapshotChunk"))


def encode_snapshot_ack(ack: SnapshotAck) -> bytes:
    return c.dumps((ack.region_id, ack.snapshot_id, ack.seq, ack.status, ack.reason))


def _ack_root(v: object) -> SnapshotAck:
    w = "SnapshotAck"
    a = c.exact_len(c.array(v, w, "root"), 5, w)
    return SnapshotAck(
        c.u64(a[0], w, "region_id"), c.u64(a[1], w, "snapshot_id"), c.u64(a[2], w, "seq"),
        c.enum_member(_ACK_STATUS, a[3], w, "status"), c.text(a[4], w, "reason"),
    )  # fmt: skip


def decode_snapshot_ack(payload: bytes) -> SnapshotAck:
    return guard("SnapshotAck", _ack_root, c.loads(payload, "SnapshotAck"))


def encode_hello(h: Hello) -> bytes:
    return c.dumps((h.store_id, h.cluster_id, h.address))


def _hello_root(v: object) -> Hello:
    w = "Hello"
    a = c.exact_len(c.array(v, w, "root"), 3, w)
    return Hello(c.u64(a[0], w, "store_id"), c.u64(a[1], w, "cluster_id"),
                 c.text(a[2], w, "address"))  # fmt: skip


def decode_hello(payload: bytes) -> Hello:
    return guard("Hello", _hello_root, c.loads(payload, "Hello"))


def encode_error_notice(e: ErrorNotice) -> bytes:
    return c.dumps((e.code, e.message))


def _notice_root(v: object) -> ErrorNotice:
    w = "ErrorNotice"
    a = c.exact_len(c.array(v, w, "root"), 2, w)
    return ErrorNotice(c.enum_member(_ERROR_CODES, a[0], w, "code"), c.text(a[1], w, "message"))


def decode_error_notice(payload: bytes) -> ErrorNotice:
    return guard("ErrorNotice", _notice_root, c.loads(payload, "ErrorNotice"))


# -- dispatch by frame kind -------------------------------------------------------------------

Payload = (
    RaftBatch | KvRequest | KvResponse | AdminRequest | AdminResponse | SnapshotChunk
    | SnapshotAck | ErrorNotice | Hello | PlacementRequest | PlacementResponse
)  # fmt: skip

_ENCODERS: dict[type, tuple[FrameKind, Callable[[Any], bytes]]] = {
    RaftBatch: (FrameKind.RAFT_BATCH, encode_raft_batch),
    KvRequest: (FrameKind.KV_REQUEST, rq.encode_kv_request),
    KvResponse: (FrameKind.KV_RESPONSE, rq.encode_kv_response),
    AdminRequest: (FrameKind.ADMIN_REQUEST, rq.encode_admin_request),
    AdminResponse: (FrameKind.ADMIN_RESPONSE, rq.encode_admin_response),
    SnapshotChunk: (FrameKind.SNAPSHOT_CHUNK, encode_snapshot_chunk),
    SnapshotAck: (FrameKind.SNAPSHOT_ACK, encode_snapshot_ack),
    ErrorNotice: (FrameKind.ERROR, encode_error_notice),
    Hello: (FrameKind.HELLO, encode_hello),
    PlacementRequest: (FrameKind.PLACEMENT_REQUEST, pc.encode_placement_request),
    PlacementResponse: (FrameKind.PLACEMENT_RESPONSE, pc.encode_placement_response),
}
_DECODERS: dict[FrameKind, Callable[[bytes], Payload]] = {
    FrameKind.RAFT_BATCH: decode_raft_batch,
    FrameKind.KV_REQUEST: rq.decode_kv_request,
    FrameKind.KV_RESPONSE: rq.decode_kv_response,
    FrameKind.ADMIN_REQUEST: rq.decode_admin_request,
    FrameKind.ADMIN_RESPONSE: rq.decode_admin_response,
    FrameKind.SNAPSHOT_CHUNK: decode_snapshot_chunk,
    FrameKind.SNAPSHOT_ACK: decode_snapshot_ack,
    FrameKind.ERROR: decode_error_notice,
    FrameKind.HELLO: decode_hello,
    FrameKind.PLACEMENT_REQUEST: pc.decode_placement_request,
    FrameKind.PLACEMENT_RESPONSE: pc.decode_placement_response,
}


def encode_payload(obj: Payload) -> tuple[FrameKind, bytes]:
    """The frame kind and payload bytes for any frame payload object.

    Raises:
        TypeError: ``obj`` is not a frame payload type.
    """
    entry = _ENCODERS.get(type(obj))
    if entry is None:
        raise TypeError(f"{type(obj).__name__} is not a frame payload")
    kind, enc = entry
    return kind, enc(obj)


def decode_payload(kind: FrameKind, payload: bytes) -> Payload:
    """Decode a frame's payload with the codec of its kind (only WireError on bad input)."""
    return _DECODERS[kind](payload)
