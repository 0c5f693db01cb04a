"""The protocol's own messages: what travels between stores, clients and the
placement service besides the Raft types themselves.

These are plain typed records; :mod:`multiraft.wire.codec` and
:mod:`multiraft.wire.request_codec` turn them into CBOR payloads and back, one
payload kind per :class:`~multiraft.wire.frames.FrameKind`:

=============== ===================================================
RAFT_BATCH      :class:`RaftBatch` (one store's messages for many regions)
KV_REQUEST      :class:`KvRequest`
KV_RESPONSE     :class:`KvResponse`
ADMIN_REQUEST   :class:`AdminRequest`
ADMIN_RESPONSE  :class:`AdminResponse`
SNAPSHOT_CHUNK  :class:`SnapshotChunk`
SNAPSHOT_ACK    :class:`SnapshotAck`
ERROR           :class:`ErrorNotice` (why a connection is about to be closed)
HELLO           :class:`Hello` (first frame on every connection, both ways)
=============== ===================================================

Invariants a decoder guarantees (and an encoder assumes): ids, indexes, terms
and counts are u64 (``0 <= n < 2**64``); keys and values are ``bytes``; enum
fields hold members of their enum. Request errors (:class:`RequestError`
subclasses) are *values* sent back to a client, not Python exceptions.

The hot records (:class:`RaftEnvelope`, :class:`RaftBatch`) are mutable
slotted dataclasses, because frozen ones cost twice as much to build; the
request/response records are frozen.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from multiraft.raft.types import Message
from regions.region import Peer, Region, RegionEpoch

# -- raft traffic --------------------------------------------------------------------------


@dataclass(slots=True)
class RaftEnvelope:
    """One Raft message addressed to one region's peer (TiKV ``RaftMessage``).

    ``start_key``/``end_key`` and ``region_epoch`` let a store that has no peer
    for ``region_id`` yet decide whether to create one; ``is_tombstone`` tells
    a removed peer to destroy itself.
    """

    region_id: int
    from_peer: Peer
    to_peer: Peer
    region_epoch: RegionEpoch
    message: Message
    is_tombstone: bool = False
    start_key: bytes = b""
    end_key: bytes = b""


@dataclass(slots=True)
class RaftBatch:
    """All envelopes one store sends another in one flush (TiKV ``BatchRaftMessage``)."""

    from_store_id: int
    envelopes: list[RaftEnvelope] = field(default_factory=list)


# -- client requests -------------------------------------------------------------------------


class ReadMode(IntEnum):
    """How a read is served: through ReadIndex, under the leader lease, or from any
    replica's applied state (possibly stale)."""

    Linearizable = 0
    Lease = 1
    Stale = 2


@dataclass(frozen=True, slots=True)
class Get:
    key: bytes


@dataclass(frozen=True, slots=True)
class Put:
    key: bytes
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    key: bytes


@dataclass(frozen=True, slots=True)
class Scan:
    """Keys in ``[start_key, end_key)`` (empty end: to the region's end), at most ``limit``."""

    start_key: bytes
    end_key: bytes
    limit: int


@dataclass(frozen=True, slots=True)
class Cas:
    """Set ``key`` to ``new_value`` iff its current value is ``expected``.

    ``expected=None`` means "the key is absent"; ``new_value=None`` deletes it.
    """

    key: bytes
    expected: bytes | None
    new_value: bytes | None


@dataclass(frozen=True, slots=True)
class BatchPut:
    pairs: list[tuple[bytes, bytes]]


KvOp = Get | Put | Delete | Scan | Cas | BatchPut


@dataclass(frozen=True, slots=True)
class KvRequest:
    """A client operation on one region, made for the epoch the client believes in."""

    request_id: int
    region_id: int
    epoch: RegionEpoch
    op: KvOp
    read_mode: ReadMode = ReadMode.Linearizable


@dataclass(frozen=True, slots=True)
class GetResult:
    value: bytes | None  # None: no such key


@dataclass(frozen=True, slots=True)
class ScanResult:
    pairs: list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class CasResult:
    succeeded: bool
    previous: bytes | None  # the value before the operation; None if absent


@dataclass(frozen=True, slots=True)
class WriteOk:
    """A Put, Delete or BatchPut was applied."""


KvResult = GetResult | ScanResult | CasResult | WriteOk


# -- request errors (kvproto errorpb; see multiraft-design.md 4.4) ----------------------------


@dataclass(frozen=True, slots=True)
class RequestError:
    """Base of the errors a store answers instead of a result. A value, not an exception."""


@dataclass(frozen=True, slots=True)
class NotLeader(RequestError):
    """This peer is not the leader; ``leader`` is a hint (None: unknown)."""

    region_id: int
    leader: Peer | None


@dataclass(frozen=True, slots=True)
class EpochNotMatch(RequestError):
    """The request's epoch is stale; these are the current region and its split siblings."""

    current_regions: list[Region]


@dataclass(frozen=True, slots=True)
class RegionNotFound(RequestError):
    region_id: int


@dataclass(frozen=True, slots=True)
class KeyNotInRegion(RequestError):
    key: bytes
    region_id: int
    start_key: bytes
    end_key: bytes


@dataclass(frozen=True, slots=True)
class ServerIsBusy(RequestError):
    reason: str
    backoff_ms: int = 0


@dataclass(frozen=True, slots=True)
class StaleCommand(RequestError):
    """The proposal was dropped (its entry was overwritten by a newer term): retry."""


@dataclass(frozen=True, slots=True)
class Timeout(RequestError):
    """The store gave up waiting; the outcome of a write is unknown."""


@dataclass(frozen=True, slots=True)
class Internal(RequestError):
    message: str


@dataclass(frozen=True, slots=True)
class KvResponse:
    request_id: int
    result: KvResult | RequestError

    @property
    def error(self) -> RequestError | None:
        return self.result if isinstance(self.result, RequestError) else None


# -- admin requests --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SplitRegion:
    """Split the region at ``split_key`` (the store asks placement for the new ids)."""

    split_key: bytes


@dataclass(frozen=True, slots=True)
class TransferLeader:
    peer: Peer


@dataclass(frozen=True, slots=True)
class AddPeer:
    """Add ``peer`` (a new peer id from placement) as a voter or, usually, a learner."""

    peer: Peer


@dataclass(frozen=True, slots=True)
class RemovePeer:
    peer: Peer


@dataclass(frozen=True, slots=True)
class PromoteLearner:
    peer: Peer


@dataclass(frozen=True, slots=True)
class RegionStatus:
    """Report the region's descriptor and Raft progress."""


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """Report the store (the request's region id and epoch are ignored)."""


@dataclass(frozen=True, slots=True)
class InjectFaults:
    """Test only: drop all raft traffic to and from these stores; an empty list heals.

    Replaces the previous rules. Refused unless the store runs with fault injection
    enabled; the request's region id and epoch are ignored.
    """

    blocked_store_ids: list[int]


AdminCommand = (
    SplitRegion
    | TransferLeader
    | AddPeer
    | RemovePeer
    | PromoteLearner
    | RegionStatus
    | StoreStatus
    | InjectFaults
)


@dataclass(frozen=True, slots=True)
class AdminRequest:
    request_id: int
    region_id: int
    epoch: RegionEpoch
    command: AdminCommand


@dataclass(frozen=True, slots=True)
class AdminOk:
    """The command was accepted (conf changes and transfers complete asynchronously)."""


@dataclass(frozen=True, slots=True)
class SplitResult:
    regions: list[Region]  # left to right, the parent's successors


@dataclass(frozen=True, slots=True)
class RegionStatusResult:
    region: Region
    leader: Peer | None
    term: int
    commit_index: int
    applied_index: int
    last_index: int


@dataclass(frozen=True, slots=True)
class StoreStatusResult:
    store_id: int
    address: str
    region_count: int
    leader_count: int
    used_bytes: int


AdminResult = AdminOk | SplitResult | RegionStatusResult | StoreStatusResult


@dataclass(frozen=True, slots=True)
class AdminResponse:
    request_id: int
    result: AdminResult | RequestError

    @property
    def error(self) -> RequestError | None:
        return self.result if isinstance(self.result, RequestError) else None


# -- snapshots, handshake, connection errors ------------------------------------------------


@dataclass(frozen=True, slots=True)
class SnapshotChunk:
    """One piece of a region snapshot stream; ``seq`` counts from 0.

    The first chunk (``seq == 0``) carries the MsgSnapshot envelope with the
    snapshot metadata; the receiver routes it to Raft only after the ``last``
    chunk is stored and verified.
    """

    region_id: int
    snapshot_id: int
    seq: int
    data: bytes
    last: bool
    envelope: RaftEnvelope | None = None


class SnapshotAckStatus(IntEnum):
    Accepted = 0  # chunks up to ``seq`` are stored (after the last: handed to Raft)
    Busy = 1  # over the receiver's concurrency limit: retry later
    Rejected = 2  # stale or invalid snapshot: do not retry this one


@dataclass(frozen=True, slots=True)
class SnapshotAck:
    region_id: int
    snapshot_id: int
    seq: int
    status: SnapshotAckStatus
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Hello:
    """First frame each way. ``store_id`` 0: a client; ``cluster_id`` 0: "not known yet"."""

    store_id: int
    cluster_id: int
    address: str


class ErrorCode(IntEnum):
    Protocol = 0  # a bad frame or payload from the peer
    WrongCluster = 1
    UnsupportedVersion = 2
    Busy = 3  # too many connections
    ShuttingDown = 4


@dataclass(frozen=True, slots=True)
class ErrorNotice:
    """Sent (best effort) just before closing a connection, to say why."""

    code: ErrorCode
    message: str
