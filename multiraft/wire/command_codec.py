"""The payload of a Raft log entry: a :class:`RaftCmd`, and its strict CBOR codec.

Every normal entry a store proposes carries one command, written by the leader
that accepted a client request and applied, identically, by every replica that
commits it. A command has a header (the region it was made for, the epoch the
proposer checked, the client's request id) and either a list of KV writes or
one admin command. The leader's no-op entry has empty data and is not a command.

Schema (one flat positional array; ``u`` = u64, ``b`` = bytes, ``b?`` = bytes or null)::

  [format u (=1), kind u, region_id u, conf_ver u, version u, request_id u, body...]
    kind 1 (writes): a sequence of ops, each a tag and its fields
        1 Put [key b, value b]   2 Delete [key b]   3 Cas [key b, expected b?, new b?]
        4 BatchPut [n u, (key b, value b) * n]
    kind 2 (admin): one admin tag and ONE nested array of its fields
        1 BatchSplit  [[split_key b, new_region_id u, [new_peer_id u*]]*]
        2 CompactLog  [compact_index u, compact_term u]
        3 ChangePeer  [change_type u, peer_id u, store_id u, role u]
        4 ChangePeerV2 [[change_type u, peer_id u, store_id u, role u]*]  (empty: leave joint)

Tags are part of the on-disk format (entries live in the log): never renumber
one, only add. A decoder is the trust boundary for bytes read back from a log
written by another version or damaged on disk, so it checks every field and
raises only :class:`~multiraft.wire.errors.WireError`; apply treats such an
entry as a no-op on every replica alike (deterministic), never as a crash.

Writes are the hot path (one entry per client write), so they are flat: a Put
costs one small tuple and one ``cbor2.dumps``. Admin commands are rare and nest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, assert_never

from multiraft.raft.types import ConfChangeType
from multiraft.wire import _cbor as c
from multiraft.wire._cbor import guard
from multiraft.wire.errors import SchemaError
from multiraft.wire.messages import BatchPut, Cas, Delete, Put
from regions.region import Peer, RegionEpoch

__all__ = [
    "AdminCmd",
    "BatchSplit",
    "ChangePeer",
    "ChangePeerV2",
    "CmdHeader",
    "CompactLog",
    "RaftCmd",
    "SplitRequest",
    "WriteOp",
    "decode_cmd",
    "encode_cmd",
]

FORMAT = 1
_KIND_WRITES = 1
_KIND_ADMIN = 2
_WHAT = "RaftCmd"

#: A KV write a command may carry (the client's op, unchanged).
WriteOp = Put | Delete | Cas | BatchPut


@dataclass(frozen=True, slots=True)
class CmdHeader:
    """Who the command is for: checked at propose time and again at apply time."""

    region_id: int
    epoch: RegionEpoch
    #: The client's request id (for logs; not unique across clients).
    request_id: int = 0


@dataclass(frozen=True, slots=True)
class SplitRequest:
    """One new region of a split: its first key, its id, and one new peer id per
    existing peer, in the order of the parent's ``peers`` (multiraft-design §4.2)."""

    split_key: bytes
    new_region_id: int
    new_peer_ids: list[int]


@dataclass(frozen=True, slots=True)
class BatchSplit:
    """Split the region at each ``split_key`` (strictly increasing, inside the range)."""

    requests: list[SplitRequest]


@dataclass(frozen=True, slots=True)
class CompactLog:
    """Truncate the region's log up to ``compact_index`` (whose term is ``compact_term``)."""

    compact_index: int
    compact_term: int


@dataclass(frozen=True, slots=True)
class ChangePeer:
    """The region-level meaning of a conf-change entry: carried in its context, so the
    apply step knows the Peer (store id, role) and can check and bump ``conf_ver``."""

    change_type: ConfChangeType
    peer: Peer


@dataclass(frozen=True, slots=True)
class ChangePeerV2:
    """The region-level meaning of a ConfChangeV2 entry (carried in its context): the
    change list of :func:`regions.conf_change.apply_conf_change` — one change is simple,
    several enter a joint configuration, none leaves it."""

    changes: list[ChangePeer]


AdminCmd = BatchSplit | CompactLog | ChangePeer | ChangePeerV2


@dataclass(frozen=True, slots=True)
class RaftCmd:
    """One entry's command. Invariant: ``admin is None`` or ``writes == []``."""

    header: CmdHeader
    writes: list[WriteOp] = field(default_factory=list)
    admin: AdminCmd | None = None


_CHANGE_TYPES: dict[int, ConfChangeType] = {t.value: t for t in ConfChangeType}


# -- encoding ---------------------------------------------------------------------------------


def _write_fields(out: list[Any], op: WriteOp) -> None:
    match op:
        case Put(key, value):
            out += (1, key, value)
        case Delete(key):
            out += (2, key)
        case Cas(key, expected, new_value):
            out += (3, key, expected, new_value)
        case BatchPut(pairs):
            out += (4, len(pairs))
            for k, v in pairs:
                out += (k, v)
        case _:
            assert_never(op)


def _admin_fields(cmd: AdminCmd) -> tuple[int, list[Any]]:
    match cmd:
        case BatchSplit(requests):
            return 1, [[r.split_key, r.new_region_id, list(r.new_peer_ids)] for r in requests]
        case CompactLog(index, term):
            return 2, [index, term]
        case ChangePeer(change_type, peer):
            return 3, [int(change_type), peer.id, peer.store_id, int(peer.role)]
        case ChangePeerV2(changes):
            return 4, [[int(c.change_type), c.peer.id, c.peer.store_id, int(c.peer.role)]
                       for c in changes]  # fmt: skip
        case _:
            assert_never(cmd)


def encode_cmd(cmd: RaftCmd) -> bytes:
    """The entry data for ``cmd``.

    Raises:
        ValueError: ``cmd`` carries both writes and an admin command, or neither.
    """
    h = cmd.header
    head: list[Any] = [FORMAT, 0, h.region_id, h.epoch.conf_ver, h.epoch.version, h.request_id]
    if cmd.admin is not None:
        if cmd.writes:
            raise ValueError("a RaftCmd carries writes or an admin command, not both")
        tag, fields = _admin_fields(cmd.admin)
        head[1] = _KIND_ADMIN
        head += (tag, fields)
        return c.dumps(head)
    if not cmd.writes:
        raise ValueError("a RaftCmd needs at least one write or an admin command")
    head[1] = _KIND_WRITES
    for op in cmd.writes:
        _write_fields(head, op)
    return c.dumps(head)


# -- decoding ---------------------------------------------------------------------------------


def _need(a: list[Any], at: int, n: int, name: str) -> None:
    if at + n > len(a):
        raise SchemaError(_WHAT, f"array ends inside a {name}")


def _writes_from(a: list[Any], at: int) -> list[WriteOp]:
    w = _WHAT
    out: list[WriteOp] = []
    end = len(a)
    if at >= end:
        raise SchemaError(w, "a write command without writes")
    while at < end:
        tag = a[at]
        if type(tag) is not int:
            c.fail(w, "write tag", "an int", tag)
        at += 1
        if tag == 1:
            _need(a, at, 2, "Put")
            out.append(Put(c.byt(a[at], w, "key"), c.byt(a[at + 1], w, "value")))
            at += 2
        elif tag == 2:
            _need(a, at, 1, "Delete")
            out.append(Delete(c.byt(a[at], w, "key")))
            at += 1
        elif tag == 3:
            _need(a, at, 3, "Cas")
            out.append(Cas(c.byt(a[at], w, "key"), c.opt_bytes(a[at + 1], w, "expected"),
                           c.opt_bytes(a[at + 2], w, "new_value")))  # fmt: skip
            at += 3
        elif tag == 4:
            _need(a, at, 1, "BatchPut")
            n = c.u64(a[at], w, "BatchPut count")
            at += 1
            # Checked against what is present before any allocation from the count.
            _need(a, at, 2 * n, "BatchPut")
            flat = a[at : at + 2 * n]
            if tuple(map(type, flat)) != (bytes,) * len(flat):
                raise SchemaError(w, "BatchPut keys and values must all be bytes")
            it = iter(flat)
            out.append(BatchPut(list(zip(it, it))))
            at += 2 * n
        else:
            raise SchemaError(w, f"unknown write tag {tag}: expected one of [1, 2, 3, 4]")
    return out


def _split_request(v: object) -> SplitRequest:
    w = _WHAT
    a = c.exact_len(c.array(v, w, "split request"), 3, w)
    return SplitRequest(c.byt(a[0], w, "split_key"), c.u64(a[1], w, "new_region_id"),
                        c.u64_list(a[2], w, "new_peer_ids"))  # fmt: skip


def _admin_from(a: list[Any], at: int) -> AdminCmd:
    w = _WHAT
    if len(a) != at + 2:
        raise SchemaError(w, f"an admin command is a tag and one array, got {len(a) - at} items")
    tag, f = a[at], c.array(a[at + 1], w, "admin fields")
    if type(tag) is not int:
        c.fail(w, "admin tag", "an int", tag)
    if tag == 1:
        if not f:
            raise SchemaError(w, "BatchSplit without split requests")
        return BatchSplit([_split_request(r) for r in f])
    if tag == 2:
        c.exact_len(f, 2, w)
        return CompactLog(c.u64(f[0], w, "compact_index"), c.u64(f[1], w, "compact_term"))
    if tag == 3:
        return _change_peer(f)
    if tag == 4:
        return ChangePeerV2([_change_peer(c.array(x, w, "change")) for x in f])
    raise SchemaError(w, f"unknown admin tag {tag}: expected one of [1, 2, 3, 4]")


def _change_peer(f: list[Any]) -> ChangePeer:
    w = _WHAT
    c.exact_len(f, 4, w)
    change = c.enum_member(_CHANGE_TYPES, f[0], w, "change_type")
    for i, name in ((1, "peer.id"), (2, "peer.store_id"), (3, "peer.role")):
        c.u64(f[i], w, name)
    return ChangePeer(change, c.peer(f[1], f[2], f[3], w))


def _cmd_root(v: object) -> RaftCmd:
    w = _WHAT
    a = c.array(v, w, "root")
    if len(a) < 6:
        raise SchemaError(w, f"expected at least 6 fields, got {len(a)}")
    if a[0] != FORMAT or type(a[0]) is not int:
        c.fail(w, "format", f"{FORMAT}", a[0])
    kind = a[1]
    header = CmdHeader(c.u64(a[2], w, "region_id"), c.take_epoch(a, 3, w),
                       c.u64(a[5], w, "request_id"))  # fmt: skip
    if kind == _KIND_WRITES and type(kind) is int:
        return RaftCmd(header, _writes_from(a, 6))
    if kind == _KIND_ADMIN and type(kind) is int:
        return RaftCmd(header, admin=_admin_from(a, 6))
    c.fail(w, "kind", f"{_KIND_WRITES} or {_KIND_ADMIN}", kind)


def decode_cmd(data: bytes) -> RaftCmd:
    """The command in an entry's data.

    Raises:
        WireError: the bytes are not a well-formed command (and nothing else).
    """
    return guard(_WHAT, _cmd_root, c.loads(data, _WHAT))
