"""The Raft entry payload codec: round trips, and strict decoding (only WireError, ever)."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from multiraft.raft import ConfChangeType
from multiraft.wire.command_codec import (
    AdminCmd,
    BatchSplit,
    ChangePeer,
    ChangePeerV2,
    CmdHeader,
    CompactLog,
    RaftCmd,
    SplitRequest,
    decode_cmd,
    encode_cmd,
)
from multiraft.wire.errors import WireError
from multiraft.wire.messages import BatchPut, Cas, Delete, Put
from regions.region import Peer, PeerRole, RegionEpoch

H = CmdHeader(7, RegionEpoch(3, 4), 99)

keys = st.binary(min_size=1, max_size=16)
write_ops = st.one_of(
    st.builds(Put, keys, st.binary(max_size=32)),
    st.builds(Delete, keys),
    st.builds(Cas, keys, st.none() | st.binary(max_size=8), st.none() | st.binary(max_size=8)),
    st.builds(BatchPut, st.lists(st.tuples(keys, st.binary(max_size=8)), max_size=5)),
)
u64 = st.integers(0, 2**64 - 1)
headers = st.builds(CmdHeader, u64, st.builds(RegionEpoch, u64, u64), u64)


@given(headers, st.lists(write_ops, min_size=1, max_size=6))
def test_write_commands_round_trip(h: CmdHeader, writes: list[Put]) -> None:
    cmd = RaftCmd(h, list(writes))
    assert decode_cmd(encode_cmd(cmd)) == cmd


@pytest.mark.parametrize(
    "admin",
    [
        BatchSplit([SplitRequest(b"m", 8, [81, 82, 83]), SplitRequest(b"t", 9, [91, 92, 93])]),
        CompactLog(120, 7),
        ChangePeer(ConfChangeType.AddLearnerNode, Peer(104, 4, PeerRole.Learner)),
        ChangePeer(ConfChangeType.RemoveNode, Peer(101, 1)),
        ChangePeerV2([
            ChangePeer(ConfChangeType.AddNode, Peer(104, 4, PeerRole.Learner)),
            ChangePeer(ConfChangeType.AddLearnerNode, Peer(101, 1)),
        ]),
        ChangePeerV2([]),
    ],
)
def test_admin_commands_round_trip(admin: AdminCmd) -> None:
    cmd = RaftCmd(H, admin=admin)
    assert decode_cmd(encode_cmd(cmd)) == cmd


def test_a_command_has_writes_or_an_admin_command() -> None:
    with pytest.raises(ValueError, match="at least one"):
        encode_cmd(RaftCmd(H))
    with pytest.raises(ValueError, match="not both"):
        encode_cmd(RaftCmd(H, [Put(b"k", b"v")], CompactLog(1, 1)))


@pytest.mark.parametrize(
    ("obj", "detail"),
    [
        ([1, 1, 7, 3, 4, 99], "without writes"),
        ([2, 1, 7, 3, 4, 99, 1, b"k", b"v"], "format"),
        ([1, 3, 7, 3, 4, 99, 1, b"k", b"v"], "kind"),
        ([1, 1, -7, 3, 4, 99, 1, b"k", b"v"], "region_id"),
        ([1, 1, 7, 3, 4, 99, 1, b"k"], "inside a Put"),
        ([1, 1, 7, 3, 4, 99, 1, b"k", "v"], "value"),
        ([1, 1, 7, 3, 4, 99, 9, b"k"], "unknown write tag"),
        ([1, 1, 7, 3, 4, 99, True, b"k", b"v"], "write tag"),
        ([1, 1, 7, 3, 4, 99, 4, 2**40, b"k", b"v"], "inside a BatchPut"),
        ([1, 1, 7, 3, 4, 99, 4, 1, b"k", 5], "BatchPut keys"),
        ([1, 2, 7, 3, 4, 99, 2, [1]], "expected an array of 2"),
        ([1, 2, 7, 3, 4, 99, 3, [9, 1, 1, 0]], "change_type"),
        ([1, 2, 7, 3, 4, 99, 1, []], "without split requests"),
        ([1, 2, 7, 3, 4, 99, 7, []], "unknown admin tag"),
        ([1, 2, 7, 3, 4, 99, 2, [1, 1], 5], "a tag and one array"),
    ],
)
def test_malformed_commands_are_refused(obj: list[object], detail: str) -> None:
    with pytest.raises(WireError, match=detail):
        decode_cmd(cbor2.dumps(obj))


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_wire_error(data: bytes) -> None:
    try:
        decode_cmd(data)
    except WireError:
        pass


@given(headers, st.lists(write_ops, min_size=1, max_size=3), st.data())
def test_truncated_and_mutated_commands_raise_only_wire_error(
    h: CmdHeader, writes: list[Put], data: st.DataObject
) -> None:
    raw = bytearray(encode_cmd(RaftCmd(h, list(writes))))
    cut = data.draw(st.integers(0, len(raw) - 1))
    pos = data.draw(st.integers(0, len(raw) - 1))
    for blob in (bytes(raw[:cut]), bytes(raw[:pos] + bytes([raw[pos] ^ 0xFF]) + raw[pos + 1 :])):
        try:
            decode_cmd(blob)
        except WireError:
            pass
