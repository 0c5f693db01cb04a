"""The placement protocol's codec: round trips, and hostile payloads raise only WireError."""

from __future__ import annotations

import random
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings

from multiraft.wire import FrameKind, SchemaError, WireError, decode_payload, encode_payload
from multiraft.wire.placement_codec import (
    decode_placement_request,
    decode_placement_response,
    decode_store_info,
    encode_store_info,
)
from multiraft.wire.placement_messages import (
    AllocIds,
    DownPeer,
    GetClusterInfo,
    Ids,
    OperatorInfo,
    PlacementRequest,
    PlacementResponse,
    RegionHeartbeat,
    RegionRoute,
    RegionRoutes,
    RegionStatus,
    SetStoreState,
    StoreHeartbeat,
    StoreInfo,
    StoreState,
    StoreStats,
    StoreStatus,
    StoreStatusList,
)
from regions.region import Peer, PeerRole, Region, RegionEpoch
from regions.scheduling import TransferLeader
from tests.placement import placement_strategies as ps

KINDS = (FrameKind.PLACEMENT_REQUEST, FrameKind.PLACEMENT_RESPONSE)


@settings(max_examples=300, deadline=None)
@given(ps.placement_requests)
def test_request_round_trip(req: PlacementRequest) -> None:
    kind, payload = encode_payload(req)
    assert kind == FrameKind.PLACEMENT_REQUEST
    assert decode_payload(kind, payload) == req


@settings(max_examples=300, deadline=None)
@given(ps.placement_responses)
def test_response_round_trip(resp: PlacementResponse) -> None:
    kind, payload = encode_payload(resp)
    assert kind == FrameKind.PLACEMENT_RESPONSE
    back = decode_payload(kind, payload)
    assert back == resp
    assert isinstance(back, PlacementResponse)
    assert back.error == resp.error


@settings(max_examples=100, deadline=None)
@given(ps.store_infos)
def test_store_record_round_trip(info: StoreInfo) -> None:
    assert decode_store_info(encode_store_info(info)) == info


def test_ids_range_and_none_route() -> None:
    assert list(Ids(7, 3).range()) == [7, 8, 9]
    kind, payload = encode_payload(PlacementResponse(1, None))
    assert decode_payload(kind, payload) == PlacementResponse(1, None)


# -- hostile payloads ---------------------------------------------------------------------------


def survive(kind: FrameKind, payload: bytes) -> Any:
    """The decoded value, or None for a WireError (no validation gap allowed)."""
    try:
        return decode_payload(kind, payload)
    except WireError as e:
        assert "invalid structure" not in str(e), f"validation gap: {e}"
        return None


def _samples() -> list[Any]:
    hb = RegionHeartbeat(
        Region(9, b"a", b"z", RegionEpoch(2, 3), [Peer(1, 1), Peer(2, 2, PeerRole.Learner)]),
        Peer(1, 1),
        7,
        [DownPeer(Peer(2, 2, PeerRole.Learner), 30)],
        [Peer(2, 2, PeerRole.Learner)],
        1 << 20,
        1000,
    )
    route = RegionRoute(hb.region, Peer(1, 1))
    return [
        PlacementRequest(1, GetClusterInfo()),
        PlacementRequest(2, AllocIds(3)),
        PlacementRequest(3, StoreHeartbeat(StoreStats(4, 1, 2, 3, 4, 5, 6, 7, 8, True, 9))),
        PlacementRequest(4, hb),
        PlacementResponse(5, RegionRoutes([route, RegionRoute(Region(3, b"z"))])),
        PlacementResponse(6, StoreInfo(4, "127.0.0.1:20160", "", StoreState.Offline, "0.1")),
        PlacementRequest(7, SetStoreState(4, StoreState.Offline)),
        PlacementResponse(8, StoreStatusList([StoreStatus(
            StoreInfo(4, "h:1"), "offline", 2.5, StoreStats(4, 1, 2), 3, 1, 1 << 20, 3.0, 1.0,
        )])),
        PlacementResponse(9, RegionStatus(route, hb.down_peers, hb.pending_peers, 5, 6, 1.5,
                                          OperatorInfo(9, "move-peer", "admin", "running", 1,
                                                       [TransferLeader(hb.region.epoch, 1, 2)],
                                                       3.0))),
    ]  # fmt: skip


def test_mutated_payloads_raise_only_wire_errors() -> None:
    rng = random.Random(7)
    for obj in _samples():
        kind, payload = encode_payload(obj)
        for _ in range(400):
            b = bytearray(payload)
            for _ in range(rng.randint(1, 3)):
                b[rng.randrange(len(b))] = rng.randrange(256)
            survive(kind, bytes(b))
            survive(kind, payload[: rng.randrange(len(payload))])
            survive(kind, payload + rng.randbytes(rng.randint(1, 4)))
            # The same bytes under the other kind: a well-formed CBOR item of the wrong shape.
            survive(KINDS[0] if kind == KINDS[1] else KINDS[1], payload)


def test_random_bytes_raise_only_wire_errors() -> None:
    rng = random.Random(8)
    for _ in range(3000):
        data = rng.randbytes(rng.randint(0, 64))
        for kind in KINDS:
            survive(kind, data)


@pytest.mark.parametrize(
    "obj",
    [
        [],
        [1],
        [-1, 1],
        [1, True],
        [1, 99],
        [1, 2],  # AllocIds without its count
        [1, 2, -5],
        [1, 2, 1, 2],
        [1, 3, 1, "a", "b", 9, "v"],  # a store state out of range
        [1, 6, *range(10)],  # StoreStats one short
        [1, 6, *range(10), 1],  # is_busy must be a bool
        [1, 7, [1, b"", b"", 1, 1], 1, 1, 0, 5, 0, 0, [], [1, 2]],  # pending peers not by 3
        [1, 7, [1, b"", b"", 1, 1], 1, 1, 0, 5, 0, 0, [1, 2, 0], []],  # down peers not by 4
        [1, 8, "key"],
        [1, 10, b"", b""],
        [1, 11, 1],  # ListOperators takes nothing
        [1, 12],
        [1, 13, -1],
        [1, 14, 9, 1, 0, 0, b""],  # an unknown manual operator
        [1, 14, 1, 1, 0, 0],
        [1, 14, 3, 1, 0, 0, "key"],
        [1, 15, 1],  # SetStoreState without its state
        [1, 15, 1, 7],  # a state out of range
        [1, 16],
        [1, 16, "1"],
        [1, 17, 1, 2],
        {"a": 1},
        [1, 1, [[[[[[[1]]]]]]]],
    ],
)
def test_wrong_shapes_are_schema_or_malformed_errors(obj: Any) -> None:
    payload = cbor2.dumps(obj)
    with pytest.raises(WireError):
        decode_placement_request(payload)


@pytest.mark.parametrize(
    "obj",
    [
        [1, 8],  # a route without its region
        [1, 8, [1, b"", b"", 1, 1], 1, 2],  # a leader of 2 items
        [1, 10, [[1, b"", b"", 1, 1], 1]],
        [1, 5, [1, "a", "b", 0]],
        [1, 16, 99, "no such code"],
        [1, 16, 1],
        [1, 1, 5, 1],  # bootstrapped must be a bool
        [1, 9, 0],
        [1, 7, [9, 1, 1]],  # an unknown step tag
        [1, 7, [1, 1, 1, 5, 2]],  # AddLearner with a peer of 2 items
        [1, 7, [1, 1, 1, 5, 2, 0], [6, 1, 1, 1, 2]],  # two steps
        [1, 7, [6, 1, 1, 1]],  # TransferLeader without its target
        [1, 7, [6, 1, -1, 1, 2]],  # a negative epoch
        [1, 7, [8, 1, 1, ["k"]]],  # a split key must be bytes
        [1, 7, [4, 1, 1, [1, 2], []]],  # joint peers not by 3
        [1, 7, ["1", 1, 1, 5, 2, 0]],  # a step tag must be an int
        [1, 11, [1, "move-peer", "", "running", 0, [], 1]],  # created_at must be a float
        [1, 11, [1, "move-peer", "", "running", 0, [], float("nan")]],
        [1, 11, [1, "move-peer", "", "running", 0, [], 1.0, float("inf")]],
        [1, 11, [1, "move-peer", "", "running", 0, []]],  # too short
        [1, 11, [1, "move-peer", "", "running", 0, [[1]], 1.0]],  # a bad step
        [1, 12, [1, 2]],
        [1, 13, [[1, "a", "", 0, ""], "up", [], [], 1, 1, 1, 1.0]],  # a status one short
        [1, 13, [[1, "a", "", 0, ""], "up", [1], [], 1, 1, 1, 1.0, 1.0]],  # age not a float
        [1, 13, [[1, "a", "", 0, ""], "up", [1.0, 2.0], [], 1, 1, 1, 1.0, 1.0]],  # 2 ages
        [1, 13, [[1, "a", "", 0, ""], "up", [], [[1]], 1, 1, 1, 1.0, 1.0]],  # bad stats
        [1, 13, [[1, "a", "", 0, ""], "up", [], [], 1, 1, 1, float("nan"), 1.0]],
        [1, 14, [[1, b"", b"", 1, 1]], [], [], 0, 0, []],  # RegionStatus one short
        [1, 14, [[1, b"", b"", 1, 1]], [], [], 0, 0, [], [[1]]],  # a bad operator
    ],
)
def test_wrong_response_shapes_raise_schema_errors(obj: Any) -> None:
    with pytest.raises(SchemaError):
        decode_placement_response(cbor2.dumps(obj))


def test_store_record_rejects_damage() -> None:
    good = encode_store_info(StoreInfo(1, "h:1"))
    with pytest.raises(WireError):
        decode_store_info(good[:-1])
    with pytest.raises(WireError):
        decode_store_info(cbor2.dumps([1, "h:1", "", 0]))
