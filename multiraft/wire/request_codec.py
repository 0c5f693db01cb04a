"""CBOR codecs for client (KV) and admin requests and responses.

Each payload is one flat positional array: a fixed head, then a small integer
*variant tag*, then that variant's fields. Tags are part of the wire format:
never renumber one, only add.

Schema (``u`` = u64, ``b`` = bytes, ``b?`` = bytes or null, ``s`` = text, ``?`` = bool;
``PEER`` = 3 items ``id u, store_id u, role u``; ``REGION`` = one nested array
``[id, start_key, end_key, conf_ver, version, PEER*]``)::

  KV_REQUEST     [request_id u, region_id u, conf_ver u, version u, read_mode u, op, fields...]
    op 1 Get [key b]   2 Put [key b, value b]   3 Delete [key b]
       4 Scan [start_key b, end_key b, limit u]   5 Cas [key b, expected b?, new_value b?]
       6 BatchPut [(key b, value b)*]
  KV_RESPONSE    [request_id u, tag, fields...]
    1 GetResult [value b?]   2 ScanResult [(key b, value b)*]
    3 CasResult [succeeded ?, previous b?]   4 WriteOk []
  ADMIN_REQUEST  [request_id u, region_id u, conf_ver u, version u, command, fields...]
    1 SplitRegion [split_key b]   2 TransferLeader [PEER]   3 AddPeer [PEER]
    4 RemovePeer [PEER]   5 PromoteLearner [PEER]   6 RegionStatus []   7 StoreStatus []
    8 InjectFaults [store_id u*]
  ADMIN_RESPONSE [request_id u, tag, fields...]
    1 AdminOk []   2 SplitResult [REGION*]
    3 RegionStatusResult [REGION, term u, commit u, applied u, last u, PEER?]
    4 StoreStatusResult [store_id u, address s, region_count u, leader_count u, used_bytes u]
  errors (either response kind)
    16 NotLeader [region_id u, PEER?]   17 EpochNotMatch [REGION*]
    18 RegionNotFound [region_id u]   19 KeyNotInRegion [key b, region_id u, start b, end b]
    20 ServerIsBusy [reason s, backoff_ms u]   21 StaleCommand []   22 Timeout []
    23 Internal [message s]

These are not as hot as raft batches, so the code favours one small function
per variant over inlined speed; every field is still checked strictly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, assert_never

from multiraft.wire import _cbor as c
from multiraft.wire._cbor import guard
from multiraft.wire.errors import SchemaError
from multiraft.wire.messages import (
    AddPeer,
    AdminCommand,
    AdminOk,
    AdminRequest,
    AdminResponse,
    AdminResult,
    BatchPut,
    Cas,
    CasResult,
    Delete,
    EpochNotMatch,
    Get,
    GetResult,
    InjectFaults,
    Internal,
    KeyNotInRegion,
    KvOp,
    KvRequest,
    KvResponse,
    KvResult,
    NotLeader,
    PromoteLearner,
    Put,
    ReadMode,
    RegionNotFound,
    RegionStatus,
    RegionStatusResult,
    RemovePeer,
    RequestError,
    Scan,
    ScanResult,
    ServerIsBusy,
    SplitRegion,
    SplitResult,
    StaleCommand,
    StoreStatus,
    StoreStatusResult,
    Timeout,
    TransferLeader,
    WriteOk,
)
from regions.region import Peer

_READ_MODES: dict[int, ReadMode] = {m.value: m for m in ReadMode}

Fields = tuple[Any, ...]
#: A variant decoder: (the variant's fields, payload name) -> the object.
Decoder = Callable[[list[Any], str], Any]


# -- small helpers ----------------------------------------------------------------------------


def _want(f: list[Any], n: int, w: str, name: str) -> list[Any]:
    if len(f) != n:
        raise SchemaError(w, f"{name} takes {n} fields, got {len(f)}")
    return f


def _pairs(f: list[Any], w: str, name: str) -> list[tuple[bytes, bytes]]:
    if len(f) % 2:
        raise SchemaError(w, f"{name} needs key/value pairs, got {len(f)} items")
    if tuple(map(type, f)) != (bytes,) * len(f):
        raise SchemaError(w, f"{name} keys and values must all be bytes")
    it = iter(f)
    return list(zip(it, it))


def _flat_pairs(pairs: list[tuple[bytes, bytes]]) -> Fields:
    return tuple(x for kv in pairs for x in kv)


def _peer_fields(p: Peer) -> Fields:
    return (p.id, p.store_id, p.role)


def _one_peer(f: list[Any], w: str, name: str) -> Peer:
    return c.take_peer(_want(f, 3, w, name), 0, w, name)


def _split(v: object, w: str, head: int) -> tuple[list[Any], int, list[Any]]:
    """(array, tag, variant fields) of a payload whose tag follows ``head`` fields."""
    a = c.array(v, w, "root")
    if len(a) <= head:
        raise SchemaError(w, f"expected at least {head + 1} fields, got {len(a)}")
    tag = a[head]
    if type(tag) is not int:
        c.fail(w, "variant tag", "an int", tag)
    return a, tag, a[head + 1 :]


def _no_fields(make: Callable[[], Any], name: str) -> Decoder:
    """The decoder of a variant without fields."""

    def dec(f: list[Any], w: str) -> Any:
        _want(f, 0, w, name)
        return make()

    return dec


def _variant(table: dict[int, Decoder], tag: int, f: list[Any], w: str) -> Any:
    dec = table.get(tag)
    if dec is None:
        raise SchemaError(w, f"unknown variant tag {tag}: expected one of {sorted(table)}")
    return dec(f, w)


# -- request errors (shared by both response kinds) ---------------------------------------------


def _error_fields(e: RequestError) -> Fields:
    match e:
        case NotLeader(region_id, leader):
            return (16, region_id, *(_peer_fields(leader) if leader is not None else ()))
        case EpochNotMatch(regions):
            return (17, *(c.region_array(r) for r in regions))
        case RegionNotFound(region_id):
            return (18, region_id)
        case KeyNotInRegion(key, region_id, start_key, end_key):
            return (19, key, region_id, start_key, end_key)
        case ServerIsBusy(reason, backoff_ms):
            return (20, reason, backoff_ms)
        case StaleCommand():
            return (21,)
        case Timeout():
            return (22,)
        case Internal(message):
            return (23, message)
    raise TypeError(f"{type(e).__name__} is not a request error")


def _not_leader(f: list[Any], w: str) -> NotLeader:
    if len(f) not in (1, 4):
        raise SchemaError(w, f"NotLeader takes 1 or 4 fields, got {len(f)}")
    leader = c.take_peer(f, 1, w, "leader") if len(f) == 4 else None
    return NotLeader(c.u64(f[0], w, "region_id"), leader)


def _epoch_not_match(f: list[Any], w: str) -> EpochNotMatch:
    return EpochNotMatch([c.region_from(r, w) for r in f])


def _region_not_found(f: list[Any], w: str) -> RegionNotFound:
    return RegionNotFound(c.u64(_want(f, 1, w, "RegionNotFound")[0], w, "region_id"))


def _key_not_in_region(f: list[Any], w: str) -> KeyNotInRegion:
    _want(f, 4, w, "KeyNotInRegion")
    return KeyNotInRegion(c.byt(f[0], w, "key"), c.u64(f[1], w, "region_id"),
                          c.byt(f[2], w, "start_key"), c.byt(f[3], w, "end_key"))  # fmt: skip


def _server_is_busy(f: list[Any], w: str) -> ServerIsBusy:
    _want(f, 2, w, "ServerIsBusy")
    return ServerIsBusy(c.text(f[0], w, "reason"), c.u64(f[1], w, "backoff_ms"))


def _internal(f: list[Any], w: str) -> Internal:
    return Internal(c.text(_want(f, 1, w, "Internal")[0], w, "message"))


_ERRORS: dict[int, Decoder] = {
    16: _not_leader, 17: _epoch_not_match, 18: _region_not_found, 19: _key_not_in_region,
    20: _server_is_busy, 21: _no_fields(StaleCommand, "StaleCommand"),
    22: _no_fields(Timeout, "Timeout"), 23: _internal,
}  # fmt: skip


# -- KV requests --------------------------------------------------------------------------------


def _op_fields(op: KvOp) -> Fields:
    match op:
        case Get(key):
            return (1, key)
        case Put(key, value):
            return (2, key, value)
        case Delete(key):
            return (3, key)
        case Scan(start_key, end_key, limit):
            return (4, start_key, end_key, limit)
        case Cas(key, expected, new_value):
            return (5, key, expected, new_value)
        case BatchPut(pairs):
            return (6, *_flat_pairs(pairs))
        case _:
            assert_never(op)


def _get(f: list[Any], w: str) -> Get:
    return Get(c.byt(_want(f, 1, w, "Get")[0], w, "key"))


def _put(f: list[Any], w: str) -> Put:
    _want(f, 2, w, "Put")
    return Put(c.byt(f[0], w, "key"), c.byt(f[1], w, "value"))


def _delete(f: list[Any], w: str) -> Delete:
    return Delete(c.byt(_want(f, 1, w, "Delete")[0], w, "key"))


def _scan(f: list[Any], w: str) -> Scan:
    _want(f, 3, w, "Scan")
    return Scan(c.byt(f[0], w, "start_key"), c.byt(f[1], w, "end_key"), c.u64(f[2], w, "limit"))


def _cas(f: list[Any], w: str) -> Cas:
    _want(f, 3, w, "Cas")
    return Cas(c.byt(f[0], w, "key"), c.opt_bytes(f[1], w, "expected"),
               c.opt_bytes(f[2], w, "new_value"))  # fmt: skip


def _batch_put(f: list[Any], w: str) -> BatchPut:
    return BatchPut(_pairs(f, w, "BatchPut"))


_OPS: dict[int, Decoder] = {1: _get, 2: _put, 3: _delete, 4: _scan, 5: _cas, 6: _batch_put}


def encode_kv_request(r: KvRequest) -> bytes:
    ep = r.epoch
    return c.dumps((r.request_id, r.region_id, ep.conf_ver, ep.version, r.read_mode,
                    *_op_fields(r.op)))  # fmt: skip


def _kv_request_root(v: object) -> KvRequest:
    w = "KvRequest"
    a, tag, f = _split(v, w, 5)
    return KvRequest(
        c.u64(a[0], w, "request_id"), c.u64(a[1], w, "region_id"), c.take_epoch(a, 2, w),
        _variant(_OPS, tag, f, w), c.enum_member(_READ_MODES, a[4], w, "read_mode"),
    )  # fmt: skip


def decode_kv_request(payload: bytes) -> KvRequest:
    return guard("KvRequest", _kv_request_root, c.loads(payload, "KvRequest"))


# -- KV responses -------------------------------------------------------------------------------


def _kv_result_fields(r: KvResult | RequestError) -> Fields:
    match r:
        case GetResult(value):
            return (1, value)
        case ScanResult(pairs):
            return (2, *_flat_pairs(pairs))
        case CasResult(succeeded, previous):
            return (3, succeeded, previous)
        case WriteOk():
            return (4,)
    return _error_fields(r)


def _get_result(f: list[Any], w: str) -> GetResult:
    return GetResult(c.opt_bytes(_want(f, 1, w, "GetResult")[0], w, "value"))


def _scan_result(f: list[Any], w: str) -> ScanResult:
    return ScanResult(_pairs(f, w, "ScanResult"))


def _cas_result(f: list[Any], w: str) -> CasResult:
    _want(f, 2, w, "CasResult")
    return CasResult(c.boolean(f[0], w, "succeeded"), c.opt_bytes(f[1], w, "previous"))


_KV_RESULTS: dict[int, Decoder] = {
    1: _get_result, 2: _scan_result, 3: _cas_result, 4: _no_fields(WriteOk, "WriteOk"),
    **_ERRORS,
}  # fmt: skip


def encode_kv_response(r: KvResponse) -> bytes:
    return c.dumps((r.request_id, *_kv_result_fields(r.result)))


def _kv_response_root(v: object) -> KvResponse:
    w = "KvResponse"
    a, tag, f = _split(v, w, 1)
    return KvResponse(c.u64(a[0], w, "request_id"), _variant(_KV_RESULTS, tag, f, w))


def decode_kv_response(payload: bytes) -> KvResponse:
    return guard("KvResponse", _kv_response_root, c.loads(payload, "KvResponse"))


# -- admin requests -----------------------------------------------------------------------------


def _command_fields(cmd: AdminCommand) -> Fields:
    match cmd:
        case SplitRegion(split_key):
            return (1, split_key)
        case TransferLeader(peer):
            return (2, *_peer_fields(peer))
        case AddPeer(peer):
            return (3, *_peer_fields(peer))
        case RemovePeer(peer):
            return (4, *_peer_fields(peer))
        case PromoteLearner(peer):
            return (5, *_peer_fields(peer))
        case RegionStatus():
            return (6,)
        case StoreStatus():
            return (7,)
        case InjectFaults(blocked_store_ids):
            return (8, *blocked_store_ids)
        case _:
            assert_never(cmd)


_COMMANDS: dict[int, Decoder] = {
    1: lambda f, w: SplitRegion(c.byt(_want(f, 1, w, "SplitRegion")[0], w, "split_key")),
    2: lambda f, w: TransferLeader(_one_peer(f, w, "TransferLeader")),
    3: lambda f, w: AddPeer(_one_peer(f, w, "AddPeer")),
    4: lambda f, w: RemovePeer(_one_peer(f, w, "RemovePeer")),
    5: lambda f, w: PromoteLearner(_one_peer(f, w, "PromoteLearner")),
    6: _no_fields(RegionStatus, "RegionStatus"),
    7: _no_fields(StoreStatus, "StoreStatus"),
    8: lambda f, w: InjectFaults(c.u64_list(f, w, "blocked_store_ids")),
}


def encode_admin_request(r: AdminRequest) -> bytes:
    ep = r.epoch
    return c.dumps((r.request_id, r.region_id, ep.conf_ver, ep.version,
                    *_command_fields(r.command)))  # fmt: skip


def _admin_request_root(v: object) -> AdminRequest:
    w = "AdminRequest"
    a, tag, f = _split(v, w, 4)
    return AdminRequest(c.u64(a[0], w, "request_id"), c.u64(a[1], w, "region_id"),
                        c.take_epoch(a, 2, w), _variant(_COMMANDS, tag, f, w))  # fmt: skip


def decode_admin_request(payload: bytes) -> AdminRequest:
    return guard("AdminRequest", _admin_request_root, c.loads(payload, "AdminRequest"))


# -- admin responses ----------------------------------------------------------------------------


def _admin_result_fields(r: AdminResult | RequestError) -> Fields:
    match r:
        case AdminOk():
            return (1,)
        case SplitResult(regions):
            return (2, *(c.region_array(x) for x in regions))
        case RegionStatusResult(region, leader, term, commit, applied, last):
            leader_f = _peer_fields(leader) if leader is not None else ()
            return (3, c.region_array(region), term, commit, applied, last, *leader_f)
        case StoreStatusResult(store_id, address, region_count, leader_count, used_bytes):
            return (4, store_id, address, region_count, leader_count, used_bytes)
    return _error_fields(r)


def _region_status_result(f: list[Any], w: str) -> RegionStatusResult:
    if len(f) not in (5, 8):
        raise SchemaError(w, f"RegionStatusResult takes 5 or 8 fields, got {len(f)}")
    return RegionStatusResult(
        c.region_from(f[0], w), c.take_peer(f, 5, w, "leader") if len(f) == 8 else None,
        c.u64(f[1], w, "term"), c.u64(f[2], w, "commit_index"), c.u64(f[3], w, "applied_index"),
        c.u64(f[4], w, "last_index"),
    )  # fmt: skip


def _store_status_result(f: list[Any], w: str) -> StoreStatusResult:
    _want(f, 5, w, "StoreStatusResult")
    return StoreStatusResult(
        c.u64(f[0], w, "store_id"), c.text(f[1], w, "address"), c.u64(f[2], w, "region_count"),
        c.u64(f[3], w, "leader_count"), c.u64(f[4], w, "used_bytes"),
    )  # fmt: skip


_ADMIN_RESULTS: dict[int, Decoder] = {
    1: _no_fields(AdminOk, "AdminOk"),
    2: lambda f, w: SplitResult([c.region_from(r, w) for r in f]),
    3: _region_status_result,
    4: _store_status_result,
    **_ERRORS,
}


def encode_admin_response(r: AdminResponse) -> bytes:
    return c.dumps((r.request_id, *_admin_result_fields(r.result)))


def _admin_response_root(v: object) -> AdminResponse:
    w = "AdminResponse"
    a, tag, f = _split(v, w, 1)
    return AdminResponse(c.u64(a[0], w, "request_id"), _variant(_ADMIN_RESULTS, tag, f, w))


def decode_admin_response(payload: bytes) -> AdminResponse:
    return guard("AdminResponse", _admin_response_root, c.loads(payload, "AdminResponse"))
