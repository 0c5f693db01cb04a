"""CBOR codecs for the placement protocol (:mod:`multiraft.wire.placement_messages`).

Like :mod:`multiraft.wire.request_codec`: one positional array per payload, a
fixed head, a small integer *variant tag*, then that variant's fields. Tags are
part of the wire format: never renumber one, only add.

Schema (``u`` = u64, ``b`` = bytes, ``s`` = text, ``?`` = bool;
``PEER`` = 3 items ``id u, store_id u, role u``; ``REGION`` = one nested array
``[id, start_key, end_key, conf_ver, version, PEER*]``;
``STORE`` = 5 items ``id u, address s, metrics_address s, state u, version s``;
``STATS`` = 11 items ``store_id, region_count, leader_count, used_bytes,
capacity_bytes, available_bytes, sending_snap_count, receiving_snap_count,
applying_snap_count`` (u), ``is_busy ?, uptime_seconds u``;
``ROUTE`` = one nested array ``[REGION, PEER?]``;
``STEP`` = one nested array ``[step tag, conf_ver u, version u, fields...]`` with
1 AddLearner PEER, 2 PromoteLearner PEER, 3 DemoteVoter PEER, 4 JointEnter
``[PEER*] [PEER*]`` (promote, demote), 5 JointLeave ``[PEER*] [PEER*]``,
6 TransferLeader ``from_store u, to_store u``, 7 RemovePeer PEER, 8 SplitRegion ``[b*]``;
``OPERATOR`` = one nested array ``[region_id u, kind s, desc s, status s, step_index u,
[STEP*], created_at f, [finished_at f]?]`` (``f`` = a finite float))::

  PLACEMENT_REQUEST  [request_id u, tag, fields...]
    1 GetClusterInfo []   2 AllocIds [count u]   3 PutStore [STORE]
    4 GetStore [store_id u]   5 GetAllStores []   6 StoreHeartbeat [STATS]
    7 RegionHeartbeat [REGION, leader PEER, term u, approximate_size u,
                       approximate_keys u, [(PEER, down_seconds u)*], [PEER*]]
    8 GetRegion [key b]   9 GetRegionById [region_id u]
    10 ScanRegions [start_key b, end_key b, limit u]
    11 ListOperators []   12 GetOperator [region_id u]   13 CancelOperator [region_id u]
    14 AddOperator [kind u, region_id u, from_store u, to_store u, split_key b]
    15 SetStoreState [store_id u, state u]   16 GetStoreStatus [store_id u]
    17 GetRegionStatus [region_id u]
  PLACEMENT_RESPONSE [request_id u, tag, fields...]
    1 ClusterInfo [cluster_id u, bootstrapped ?]   2 Ids [first u, count u]   3 Ok []
    4 StoreInfo [STORE]   5 StoreList [[STORE]*]   6 StoreHeartbeatReply [REGION*]
    7 RegionHeartbeatReply [STEP?]   8 RegionRoute [REGION, PEER?]   9 no route (None) []
    10 RegionRoutes [ROUTE*]   11 OperatorInfo [OPERATOR]   12 OperatorList [OPERATOR*]
    13 StoreStatusList [STATUS*]   16 PlacementError [code u, message s]
    14 RegionStatus [ROUTE, [(PEER, down_seconds u)*], [PEER*], approximate_size u,
                     approximate_keys u, [heartbeat_age f]?, [OPERATOR]?]

``STATUS`` = one nested array ``[[STORE], liveness s, [heartbeat_age f]?, [STATS]?,
region_count u, leader_count u, region_size u, region_score f, leader_score f]``, where
``[x]?`` is an array holding the value or empty (None).

A stored store record (the placement service's LMDB) is ``[STORE]``, read back by
:func:`decode_store_info`.

Decoders check every field (exact types, u64 ranges, enum members, field counts,
nothing left over) and raise only :class:`~multiraft.wire.errors.WireError`
subclasses.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, assert_never

from multiraft.wire import _cbor as c
from multiraft.wire._cbor import guard
from multiraft.wire.errors import SchemaError
from multiraft.wire.placement_messages import (
    AddOperator,
    AllocIds,
    CancelOperator,
    ClusterInfo,
    DownPeer,
    GetAllStores,
    GetClusterInfo,
    GetOperator,
    GetRegion,
    GetRegionById,
    GetRegionStatus,
    GetStore,
    GetStoreStatus,
    Ids,
    ListOperators,
    ManualOperator,
    Ok,
    OperatorInfo,
    OperatorList,
    PlacementBody,
    PlacementError,
    PlacementErrorCode,
    PlacementRequest,
    PlacementResponse,
    PlacementResult,
    PutStore,
    RegionHeartbeat,
    RegionHeartbeatReply,
    RegionRoute,
    RegionRoutes,
    RegionStatus,
    ScanRegions,
    SetStoreState,
    StoreHeartbeat,
    StoreHeartbeatReply,
    StoreInfo,
    StoreList,
    StoreState,
    StoreStats,
    StoreStatus,
    StoreStatusList,
)
from regions.region import Peer
from regions.scheduling.steps import (
    AddLearner,
    DemoteVoter,
    JointEnter,
    JointLeave,
    PromoteLearner,
    RemovePeer,
    SplitRegion,
    Step,
    TransferLeader,
)

__all__ = [
    "decode_placement_request",
    "decode_placement_response",
    "decode_store_info",
    "encode_placement_request",
    "encode_placement_response",
    "encode_store_info",
]

_STORE_STATES: dict[int, StoreState] = {s.value: s for s in StoreState}
_ERROR_CODES: dict[int, PlacementErrorCode] = {e.value: e for e in PlacementErrorCode}
_MANUAL_KINDS: dict[int, ManualOperator] = {k.value: k for k in ManualOperator}

Fields = tuple[Any, ...]
#: A variant decoder: (the variant's fields, payload name) -> the object.
Decoder = Callable[[list[Any], str], Any]
_STORE_N = 5
_STATS_N = 11
_TAG_ERROR = 16


# -- small helpers ----------------------------------------------------------------------------


def _want(f: list[Any], n: int, w: str, name: str) -> list[Any]:
    if len(f) != n:
        raise SchemaError(w, f"{name} takes {n} fields, got {len(f)}")
    return f


def _no_fields(make: Callable[[], Any], name: str) -> Decoder:
    def dec(f: list[Any], w: str) -> Any:
        _want(f, 0, w, name)
        return make()

    return dec


def _split(v: object, w: str) -> tuple[int, int, list[Any]]:
    """(request_id, tag, variant fields) of a ``[request_id, tag, fields...]`` payload."""
    a = c.array(v, w, "root")
    if len(a) < 2:
        raise SchemaError(w, f"expected at least 2 fields, got {len(a)}")
    tag = a[1]
    if type(tag) is not int:
        c.fail(w, "variant tag", "an int", tag)
    return c.u64(a[0], w, "request_id"), tag, a[2:]


def _variant(table: dict[int, Decoder], tag: int, f: list[Any], w: str) -> Any:
    dec = table.get(tag)
    if dec is None:
        raise SchemaError(w, f"unknown variant tag {tag}: expected one of {sorted(table)}")
    return dec(f, w)


def _peer_fields(p: Peer) -> Fields:
    return (p.id, p.store_id, p.role)


def _peers_flat(v: object, w: str, field: str) -> list[Peer]:
    a = c.array(v, w, field)
    if len(a) % 3:
        raise SchemaError(w, f"{field} must hold 3 items per peer, got {len(a)}")
    return [c.take_peer(a, i, w, field) for i in range(0, len(a), 3)]


def _store_fields(s: StoreInfo) -> Fields:
    return (s.id, s.address, s.metrics_address, s.state, s.version)


def _store_from(f: list[Any], at: int, w: str) -> StoreInfo:
    return StoreInfo(
        c.u64(f[at], w, "store.id"), c.text(f[at + 1], w, "store.address"),
        c.text(f[at + 2], w, "store.metrics_address"),
        c.enum_member(_STORE_STATES, f[at + 3], w, "store.state"),
        c.text(f[at + 4], w, "store.version"),
    )  # fmt: skip


_STATS_NAMES = ("store_id", "region_count", "leader_count", "used_bytes", "capacity_bytes",
                "available_bytes", "sending_snap_count", "receiving_snap_count",
                "applying_snap_count")  # fmt: skip


def _stats_fields(s: StoreStats) -> Fields:
    return (s.store_id, s.region_count, s.leader_count, s.used_bytes, s.capacity_bytes,
            s.available_bytes, s.sending_snap_count, s.receiving_snap_count,
            s.applying_snap_count, s.is_busy, s.uptime_seconds)  # fmt: skip


def _stats_from(f: list[Any], w: str) -> StoreStats:
    _want(f, _STATS_N, w, "StoreHeartbeat")
    n = [c.u64(f[i], w, name) for i, name in enumerate(_STATS_NAMES)]
    return StoreStats(n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7], n[8],
                      c.boolean(f[9], w, "is_busy"), c.u64(f[10], w, "uptime_seconds"))  # fmt: skip


def _route_array(r: RegionRoute) -> list[Any]:
    out: list[Any] = [c.region_array(r.region)]
    if r.leader is not None:
        out += _peer_fields(r.leader)
    return out


def _route_from(f: list[Any], w: str) -> RegionRoute:
    if len(f) not in (1, 4):
        raise SchemaError(w, f"a region route takes 1 or 4 fields, got {len(f)}")
    leader = c.take_peer(f, 1, w, "leader") if len(f) == 4 else None
    return RegionRoute(c.region_from(f[0], w), leader)


# -- operator steps and operators ----------------------------------------------------------------


def _peer_list(ps: Iterable[Peer]) -> list[Any]:
    return [x for p in ps for x in _peer_fields(p)]


def _step_array(st: Step) -> list[Any]:
    head: list[Any] = [st.epoch.conf_ver, st.epoch.version]
    match st:
        case AddLearner(_, p):
            return [1, *head, *_peer_fields(p)]
        case PromoteLearner(_, p):
            return [2, *head, *_peer_fields(p)]
        case DemoteVoter(_, p):
            return [3, *head, *_peer_fields(p)]
        case JointEnter(_, ups, downs):
            return [4, *head, _peer_list(ups), _peer_list(downs)]
        case JointLeave(_, ups, downs):
            return [5, *head, _peer_list(ups), _peer_list(downs)]
        case TransferLeader(_, a, b):
            return [6, *head, a, b]
        case RemovePeer(_, p):
            return [7, *head, *_peer_fields(p)]
        case SplitRegion(_, keys):
            return [8, *head, list(keys)]
    raise TypeError(f"unknown step {st!r}")


_PEER_STEPS: dict[int, type[AddLearner | PromoteLearner | DemoteVoter | RemovePeer]] = {
    1: AddLearner, 2: PromoteLearner, 3: DemoteVoter, 7: RemovePeer,
}  # fmt: skip


def _step_from(v: object, w: str) -> Step:
    a = c.array(v, w, "step")
    if len(a) < 3:
        raise SchemaError(w, f"a step takes at least 3 fields, got {len(a)}")
    tag = a[0]
    if type(tag) is not int:
        c.fail(w, "step tag", "an int", tag)
    ep = c.take_epoch(a, 1, w)
    f = a[3:]
    if tag in _PEER_STEPS:
        _want(f, 3, w, "a peer step")
        return _PEER_STEPS[tag](ep, c.take_peer(f, 0, w, "step peer"))
    if tag in (4, 5):
        _want(f, 2, w, "a joint step")
        ups = tuple(_peers_flat(f[0], w, "promote"))
        downs = tuple(_peers_flat(f[1], w, "demote"))
        return JointEnter(ep, ups, downs) if tag == 4 else JointLeave(ep, ups, downs)
    if tag == 6:
        _want(f, 2, w, "TransferLeader")
        return TransferLeader(ep, c.u64(f[0], w, "from_store"), c.u64(f[1], w, "to_store"))
    if tag == 8:
        _want(f, 1, w, "SplitRegion")
        keys = c.array(f[0], w, "split keys")
        return SplitRegion(ep, tuple(c.byt(k, w, "split key") for k in keys))
    raise SchemaError(w, f"unknown step tag {tag}: expected 1..8")


def _finite(v: object, w: str, field: str) -> float:
    if type(v) is not float or v != v or v in (float("inf"), float("-inf")):
        c.fail(w, field, "a finite float", v)
    return v


def _operator_array(o: OperatorInfo) -> list[Any]:
    out: list[Any] = [o.region_id, o.kind, o.desc, o.status, o.step_index,
                      [_step_array(s) for s in o.steps], float(o.created_at)]  # fmt: skip
    if o.finished_at is not None:
        out.append(float(o.finished_at))
    return out


def _operator_from(v: object, w: str) -> OperatorInfo:
    a = c.array(v, w, "operator")
    if len(a) not in (7, 8):
        raise SchemaError(w, f"an operator takes 7 or 8 fields, got {len(a)}")
    return OperatorInfo(
        c.u64(a[0], w, "region_id"), c.text(a[1], w, "kind"), c.text(a[2], w, "desc"),
        c.text(a[3], w, "status"), c.u64(a[4], w, "step_index"),
        [_step_from(s, w) for s in c.array(a[5], w, "steps")],
        _finite(a[6], w, "created_at"),
        _finite(a[7], w, "finished_at") if len(a) == 8 else None,
    )  # fmt: skip


def _store_heartbeat_reply(f: list[Any], w: str) -> StoreHeartbeatReply:
    regions, ids = _want(f, 2, w, "StoreHeartbeatReply")
    return StoreHeartbeatReply([c.region_from(r, w) for r in c.array(regions, w, "regions")],
                               c.u64_list(ids, w, "operator_regions"))  # fmt: skip


def _heartbeat_reply(f: list[Any], w: str) -> RegionHeartbeatReply:
    if len(f) > 1:
        raise SchemaError(w, f"RegionHeartbeatReply takes 0 or 1 fields, got {len(f)}")
    return RegionHeartbeatReply(_step_from(f[0], w) if f else None)


def _add_operator(f: list[Any], w: str) -> AddOperator:
    _want(f, 5, w, "AddOperator")
    return AddOperator(
        c.enum_member(_MANUAL_KINDS, f[0], w, "kind"), c.u64(f[1], w, "region_id"),
        c.u64(f[2], w, "from_store"), c.u64(f[3], w, "to_store"), c.byt(f[4], w, "split_key"),
    )  # fmt: skip


# -- store records ------------------------------------------------------------------------------


def encode_store_info(s: StoreInfo) -> bytes:
    """``[STORE]``: a store as the placement service persists it."""
    return c.dumps(_store_fields(s))


def decode_store_info(payload: bytes) -> StoreInfo:
    def build(v: object) -> StoreInfo:
        w = "StoreInfo"
        return _store_from(c.exact_len(c.array(v, w, "root"), _STORE_N, w), 0, w)

    return guard("StoreInfo", build, c.loads(payload, "StoreInfo"))


# -- requests -----------------------------------------------------------------------------------


def _body_fields(b: PlacementBody) -> Fields:
    match b:
        case GetClusterInfo():
            return (1,)
        case AllocIds(count):
            return (2, count)
        case PutStore(store):
            return (3, *_store_fields(store))
        case GetStore(store_id):
            return (4, store_id)
        case GetAllStores():
            return (5,)
        case StoreHeartbeat(stats):
            return (6, *_stats_fields(stats))
        case RegionHeartbeat(region, leader, term, down, pending, size, keys):
            return (7, c.region_array(region), *_peer_fields(leader), term, size, keys,
                    _down_flat(down), _peer_list(pending))  # fmt: skip
        case GetRegion(key):
            return (8, key)
        case GetRegionById(region_id):
            return (9, region_id)
        case ScanRegions(start_key, end_key, limit):
            return (10, start_key, end_key, limit)
        case ListOperators():
            return (11,)
        case GetOperator(region_id):
            return (12, region_id)
        case CancelOperator(region_id):
            return (13, region_id)
        case AddOperator(kind, region_id, from_store, to_store, split_key):
            return (14, kind, region_id, from_store, to_store, split_key)
        case SetStoreState(store_id, state):
            return (15, store_id, state)
        case GetStoreStatus(store_id):
            return (16, store_id)
        case GetRegionStatus(region_id):
            return (17, region_id)
        case _:
            assert_never(b)


def _down_flat(down: list[DownPeer]) -> list[Any]:
    return [x for d in down for x in (*_peer_fields(d.peer), d.down_seconds)]


def _down_peers(v: object, w: str) -> list[DownPeer]:
    a = c.array(v, w, "down_peers")
    if len(a) % 4:
        raise SchemaError(w, f"down_peers must hold 4 items per peer, got {len(a)}")
    return [DownPeer(c.take_peer(a, i, w, "down peer"), c.u64(a[i + 3], w, "down_seconds"))
            for i in range(0, len(a), 4)]  # fmt: skip


def _region_heartbeat(f: list[Any], w: str) -> RegionHeartbeat:
    _want(f, 9, w, "RegionHeartbeat")
    return RegionHeartbeat(
        c.region_from(f[0], w), c.take_peer(f, 1, w, "leader"), c.u64(f[4], w, "term"),
        _down_peers(f[7], w), _peers_flat(f[8], w, "pending_peers"),
        c.u64(f[5], w, "approximate_size"), c.u64(f[6], w, "approximate_keys"),
    )  # fmt: skip


def _scan_regions(f: list[Any], w: str) -> ScanRegions:
    _want(f, 3, w, "ScanRegions")
    return ScanRegions(c.byt(f[0], w, "start_key"), c.byt(f[1], w, "end_key"),
                       c.u64(f[2], w, "limit"))  # fmt: skip


_BODIES: dict[int, Decoder] = {
    1: _no_fields(GetClusterInfo, "GetClusterInfo"),
    2: lambda f, w: AllocIds(c.u64(_want(f, 1, w, "AllocIds")[0], w, "count")),
    3: lambda f, w: PutStore(_store_from(_want(f, _STORE_N, w, "PutStore"), 0, w)),
    4: lambda f, w: GetStore(c.u64(_want(f, 1, w, "GetStore")[0], w, "store_id")),
    5: _no_fields(GetAllStores, "GetAllStores"),
    6: lambda f, w: StoreHeartbeat(_stats_from(f, w)),
    7: _region_heartbeat,
    8: lambda f, w: GetRegion(c.byt(_want(f, 1, w, "GetRegion")[0], w, "key")),
    9: lambda f, w: GetRegionById(c.u64(_want(f, 1, w, "GetRegionById")[0], w, "region_id")),
    10: _scan_regions,
    11: _no_fields(ListOperators, "ListOperators"),
    12: lambda f, w: GetOperator(c.u64(_want(f, 1, w, "GetOperator")[0], w, "region_id")),
    13: lambda f, w: CancelOperator(c.u64(_want(f, 1, w, "CancelOperator")[0], w, "region_id")),
    14: _add_operator,
    15: lambda f, w: SetStoreState(
        c.u64(_want(f, 2, w, "SetStoreState")[0], w, "store_id"),
        c.enum_member(_STORE_STATES, f[1], w, "state"),
    ),
    16: lambda f, w: GetStoreStatus(c.u64(_want(f, 1, w, "GetStoreStatus")[0], w, "store_id")),
    17: lambda f, w: GetRegionStatus(c.u64(_want(f, 1, w, "GetRegionStatus")[0], w, "region_id")),
}


def encode_placement_request(r: PlacementRequest) -> bytes:
    return c.dumps((r.request_id, *_body_fields(r.body)))


def _request_root(v: object) -> PlacementRequest:
    w = "PlacementRequest"
    request_id, tag, f = _split(v, w)
    return PlacementRequest(request_id, _variant(_BODIES, tag, f, w))


def decode_placement_request(payload: bytes) -> PlacementRequest:
    return guard("PlacementRequest", _request_root, c.loads(payload, "PlacementRequest"))


# -- responses ----------------------------------------------------------------------------------


def _result_fields(r: PlacementResult | PlacementError) -> Fields:
    match r:
        case ClusterInfo(cluster_id, bootstrapped):
            return (1, cluster_id, bootstrapped)
        case Ids(first, count):
            return (2, first, count)
        case Ok():
            return (3,)
        case StoreInfo():
            return (4, *_store_fields(r))
        case StoreList(stores):
            return (5, *(list(_store_fields(s)) for s in stores))
        case StoreHeartbeatReply(regions, operator_regions):
            return (6, [c.region_array(x) for x in regions], list(operator_regions))
        case RegionHeartbeatReply(step):
            return (7,) if step is None else (7, _step_array(step))
        case RegionRoute():
            return (8, *_route_array(r))
        case None:
            return (9,)
        case RegionRoutes(routes):
            return (10, *(_route_array(x) for x in routes))
        case OperatorInfo():
            return (11, _operator_array(r))
        case OperatorList(ops):
            return (12, *(_operator_array(o) for o in ops))
        case StoreStatusList(statuses):
            return (13, *(_store_status_array(x) for x in statuses))
        case RegionStatus():
            return (14, *_region_status_fields(r))
        case PlacementError(code, message):
            return (_TAG_ERROR, code, message)
        case _:
            assert_never(r)


def _optional(v: object | None, encode: Callable[[Any], Any] = lambda x: x) -> list[Any]:
    return [] if v is None else [encode(v)]


def _take_optional(v: object, w: str, field: str, decode: Callable[[Any], Any]) -> Any:
    a = c.array(v, w, field)
    if len(a) > 1:
        raise SchemaError(w, f"{field} holds 0 or 1 items, got {len(a)}")
    return decode(a[0]) if a else None


def _store_status_array(x: StoreStatus) -> list[Any]:
    return [list(_store_fields(x.info)), x.liveness, _optional(x.heartbeat_age, float),
            _optional(x.stats, lambda s: list(_stats_fields(s))), x.region_count,
            x.leader_count, x.region_size, float(x.region_score), float(x.leader_score)]  # fmt: skip


def _store_status_from(v: object, w: str) -> StoreStatus:
    a = c.exact_len(c.array(v, w, "store status"), 9, w)
    return StoreStatus(
        _store_from(c.exact_len(c.array(a[0], w, "store"), _STORE_N, w), 0, w),
        c.text(a[1], w, "liveness"),
        _take_optional(a[2], w, "heartbeat_age", lambda x: _finite(x, w, "heartbeat_age")),
        _take_optional(a[3], w, "stats", lambda x: _stats_from(c.array(x, w, "stats"), w)),
        c.u64(a[4], w, "region_count"), c.u64(a[5], w, "leader_count"),
        c.u64(a[6], w, "region_size"), _finite(a[7], w, "region_score"),
        _finite(a[8], w, "leader_score"),
    )  # fmt: skip


def _region_status_fields(r: RegionStatus) -> Fields:
    return (_route_array(r.route), _down_flat(r.down_peers), _peer_list(r.pending_peers),
            r.approximate_size, r.approximate_keys, _optional(r.heartbeat_age, float),
            _optional(r.operator, _operator_array))  # fmt: skip


def _region_status(f: list[Any], w: str) -> RegionStatus:
    _want(f, 7, w, "RegionStatus")
    return RegionStatus(
        _route_from(c.array(f[0], w, "route"), w), _down_peers(f[1], w),
        _peers_flat(f[2], w, "pending_peers"), c.u64(f[3], w, "approximate_size"),
        c.u64(f[4], w, "approximate_keys"),
        _take_optional(f[5], w, "heartbeat_age", lambda x: _finite(x, w, "heartbeat_age")),
        _take_optional(f[6], w, "operator", lambda x: _operator_from(x, w)),
    )  # fmt: skip


def _store_list(f: list[Any], w: str) -> StoreList:
    return StoreList([_store_from(c.exact_len(c.array(s, w, "store"), _STORE_N, w), 0, w)
                      for s in f])  # fmt: skip


def _placement_error(f: list[Any], w: str) -> PlacementError:
    _want(f, 2, w, "PlacementError")
    return PlacementError(c.enum_member(_ERROR_CODES, f[0], w, "code"),
                          c.text(f[1], w, "message"))  # fmt: skip


_RESULTS: dict[int, Decoder] = {
    1: lambda f, w: ClusterInfo(c.u64(_want(f, 2, w, "ClusterInfo")[0], w, "cluster_id"),
                                c.boolean(f[1], w, "bootstrapped")),
    2: lambda f, w: Ids(c.u64(_want(f, 2, w, "Ids")[0], w, "first"), c.u64(f[1], w, "count")),
    3: _no_fields(Ok, "Ok"),
    4: lambda f, w: _store_from(_want(f, _STORE_N, w, "StoreInfo"), 0, w),
    5: _store_list,
    6: _store_heartbeat_reply,
    7: _heartbeat_reply,
    8: _route_from,
    9: _no_fields(lambda: None, "no route"),
    10: lambda f, w: RegionRoutes([_route_from(c.array(r, w, "route"), w) for r in f]),
    11: lambda f, w: _operator_from(_want(f, 1, w, "OperatorInfo")[0], w),
    12: lambda f, w: OperatorList([_operator_from(o, w) for o in f]),
    13: lambda f, w: StoreStatusList([_store_status_from(x, w) for x in f]),
    14: _region_status,
    _TAG_ERROR: _placement_error,
}  # fmt: skip


def encode_placement_response(r: PlacementResponse) -> bytes:
    return c.dumps((r.request_id, *_result_fields(r.result)))


def _response_root(v: object) -> PlacementResponse:
    w = "PlacementResponse"
    request_id, tag, f = _split(v, w)
    return PlacementResponse(request_id, _variant(_RESULTS, tag, f, w))


def decode_placement_response(payload: bytes) -> PlacementResponse:
    return guard("PlacementResponse", _response_root, c.loads(payload, "PlacementResponse"))
