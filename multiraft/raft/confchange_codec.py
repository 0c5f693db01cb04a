"""A compact, deterministic byte form of ConfChange and ConfChangeV2.

The core must read the conf-change entries it proposes (to refuse a second
pending change and to recognise the empty "leave joint" change), so the
encoding lives here rather than in :mod:`multiraft.wire`. It is stdlib-only.

Layout: a tag byte, then unsigned LEB128 varints, then the context bytes to the
end of the buffer.

* v1: ``0x01 id change_type node_id context...``
* v2: ``0x02 transition n (change_type node_id)*n context...``
* The all-default ConfChangeV2 (Auto, no changes, no context) is ``b""``, as
  with protobuf: a leader's auto-leave entry carries empty data. ``b""`` also
  decodes to the default v1 ConfChange.
"""

from __future__ import annotations

from multiraft.raft.errors import RaftError
from multiraft.raft.types import (
    ConfChange,
    ConfChangeSingle,
    ConfChangeTransition,
    ConfChangeType,
    ConfChangeV2,
)

_TAG_V1 = 0x01
_TAG_V2 = 0x02


class ConfChangeDecodeError(RaftError):
    """Entry data that is not a conf change of the expected kind."""


def _put_varint(out: bytearray, v: int) -> None:
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _get_varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ConfChangeDecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def encode_conf_change(cc: ConfChange) -> bytes:
    out = bytearray([_TAG_V1])
    _put_varint(out, cc.id)
    _put_varint(out, int(cc.change_type))
    _put_varint(out, cc.node_id)
    out += cc.context
    return bytes(out)


def decode_conf_change(data: bytes) -> ConfChange:
    """Raises ConfChangeDecodeError on anything but a v1 encoding.

    ``b""`` decodes to the default ConfChange, as an empty protobuf message does.
    """
    if not data:
        return ConfChange()
    if data[0] != _TAG_V1:
        raise ConfChangeDecodeError("not a v1 conf change")
    cc_id, pos = _get_varint(data, 1)
    kind, pos = _get_varint(data, pos)
    node_id, pos = _get_varint(data, pos)
    try:
        change_type = ConfChangeType(kind)
    except ValueError:
        raise ConfChangeDecodeError(f"unknown change type {kind}") from None
    return ConfChange(cc_id, change_type, node_id, bytes(data[pos:]))


def encode_conf_change_v2(cc: ConfChangeV2) -> bytes:
    if cc.transition == ConfChangeTransition.Auto and not cc.changes and not cc.context:
        return b""
    out = bytearray([_TAG_V2])
    _put_varint(out, int(cc.transition))
    _put_varint(out, len(cc.changes))
    for single in cc.changes:
        _put_varint(out, int(single.change_type))
        _put_varint(out, single.node_id)
    out += cc.context
    return bytes(out)


def decode_conf_change_v2(data: bytes) -> ConfChangeV2:
    """Raises ConfChangeDecodeError on anything but a v2 encoding (or ``b""``)."""
    if not data:
        return ConfChangeV2()
    if data[0] != _TAG_V2:
        raise ConfChangeDecodeError("not a v2 conf change")
    transition, pos = _get_varint(data, 1)
    count, pos = _get_varint(data, pos)
    if count > len(data):
        raise ConfChangeDecodeError("change count exceeds the buffer")
    changes = []
    try:
        for _ in range(count):
            kind, pos = _get_varint(data, pos)
            node_id, pos = _get_varint(data, pos)
            changes.append(ConfChangeSingle(ConfChangeType(kind), node_id))
        trans = ConfChangeTransition(transition)
    except ValueError as exc:
        raise ConfChangeDecodeError(str(exc)) from None
    return ConfChangeV2(trans, changes, bytes(data[pos:]))
