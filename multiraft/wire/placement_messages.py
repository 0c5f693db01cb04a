"""The placement protocol's records: what stores and clients ask the placement service.

One request/response pair per frame kind (:mod:`multiraft.wire.placement_codec`):

====================  =======================================================
PLACEMENT_REQUEST     :class:`PlacementRequest` (``request_id`` + one body)
PLACEMENT_RESPONSE    :class:`PlacementResponse` (same ``request_id`` + a result)
====================  =======================================================

Request bodies and the result each one gets (or a :class:`PlacementError`):

========================  ============================================================
:class:`GetClusterInfo`   :class:`ClusterInfo`
:class:`AllocIds`         :class:`Ids` (``count`` fresh ids from ``first``)
:class:`PutStore`         :class:`Ok`
:class:`GetStore`         :class:`StoreInfo` (``StoreNotFound`` if unknown)
:class:`GetAllStores`     :class:`StoreList`
:class:`StoreHeartbeat`   :class:`StoreHeartbeatReply` (bootstrap regions for the store)
:class:`RegionHeartbeat`  :class:`RegionHeartbeatReply` (``StaleEpoch`` if stale)
:class:`GetRegion`        :class:`RegionRoute` or ``None`` (no region holds the key)
:class:`GetRegionById`    :class:`RegionRoute` or ``None``
:class:`ScanRegions`      :class:`RegionRoutes` (in key order)
:class:`ListOperators`    :class:`OperatorList` (running, then recently finished)
:class:`GetOperator`      :class:`OperatorInfo` or ``None`` (no operator known)
:class:`CancelOperator`   :class:`OperatorInfo` (``RegionNotFound`` if none is running)
:class:`AddOperator`      :class:`OperatorInfo` (``InvalidArgument`` if it cannot be built)
:class:`SetStoreState`    :class:`StoreInfo` (the store as updated; ``InvalidArgument`` when
                          the change is refused, ``StoreTombstoned`` for a removed store)
:class:`GetStoreStatus`   :class:`StoreStatusList` (one store, or all with id 0)
:class:`GetRegionStatus`  :class:`RegionStatus` or ``None`` (no such region)
========================  ============================================================

Invariants a decoder guarantees (and an encoder assumes): ids, counts, sizes and
terms are u64; keys are ``bytes``; addresses and messages are text; enum fields
hold members of their enum. A :class:`PlacementError` is a *value* sent back to
the caller, not a Python exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

from regions.region import Peer, Region
from regions.scheduling.steps import Step

# -- stores ----------------------------------------------------------------------------------


class StoreState(IntEnum):
    """A store's administrative state (PD ``metapb.StoreState``)."""

    Up = 0
    Offline = 1  # being drained on request; still serving
    Tombstone = 2  # drained and removed: never comes back under this id


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """A store as registered with the placement service.

    ``address`` serves raft, KV and admin traffic (the store's one listener);
    ``metrics_address`` its ``/metrics`` port (empty: none); ``version`` the
    multiraft version it runs.
    """

    id: int
    address: str
    metrics_address: str = ""
    state: StoreState = StoreState.Up
    version: str = ""


@dataclass(frozen=True, slots=True)
class StoreStats:
    """What a store reports in each store heartbeat (PD ``pdpb.StoreStats``, trimmed).

    Sizes are bytes; ``uptime_seconds`` counts from the store process's start.
    """

    store_id: int
    region_count: int = 0
    leader_count: int = 0
    used_bytes: int = 0
    capacity_bytes: int = 0
    available_bytes: int = 0
    sending_snap_count: int = 0
    receiving_snap_count: int = 0
    applying_snap_count: int = 0
    is_busy: bool = False
    uptime_seconds: int = 0


@dataclass(frozen=True, slots=True)
class DownPeer:
    """A follower its leader has not heard from for ``down_seconds``."""

    peer: Peer
    down_seconds: int


# -- request bodies --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GetClusterInfo:
    """Ask for the cluster id and whether the first region exists."""


@dataclass(frozen=True, slots=True)
class AllocIds:
    """Reserve ``count`` (>= 1) fresh ids, unique in the cluster and never reused."""

    count: int


@dataclass(frozen=True, slots=True)
class PutStore:
    """Register a store, or update its addresses or version. The ``state`` sent is ignored:
    a new store is ``Up`` and a known one keeps its state (only :class:`SetStoreState`
    changes it, so a restarting store cannot undo a drain)."""

    store: StoreInfo


@dataclass(frozen=True, slots=True)
class GetStore:
    store_id: int


@dataclass(frozen=True, slots=True)
class GetAllStores:
    """Every known store, tombstones included, by id."""


@dataclass(frozen=True, slots=True)
class StoreHeartbeat:
    stats: StoreStats


@dataclass(frozen=True, slots=True)
class RegionHeartbeat:
    """A region leader's report: its descriptor, itself, its term and its followers' health.

    Accepted only if ``region.epoch`` is not older than the known one in either
    component, and ``term`` is not older for the same epoch.
    """

    region: Region
    leader: Peer
    term: int
    down_peers: list[DownPeer] = field(default_factory=list)
    pending_peers: list[Peer] = field(default_factory=list)
    approximate_size: int = 0
    approximate_keys: int = 0


@dataclass(frozen=True, slots=True)
class GetRegion:
    """The region holding ``key``."""

    key: bytes


@dataclass(frozen=True, slots=True)
class GetRegionById:
    region_id: int


@dataclass(frozen=True, slots=True)
class ScanRegions:
    """Regions overlapping ``[start_key, end_key)`` in key order (empty end: to the end of
    the key space), at most ``limit`` of them (0: no limit)."""

    start_key: bytes
    end_key: bytes
    limit: int = 0


@dataclass(frozen=True, slots=True)
class ListOperators:
    """Every running operator, then the recently finished ones."""


@dataclass(frozen=True, slots=True)
class GetOperator:
    """The region's running operator, else its most recent finished one."""

    region_id: int


@dataclass(frozen=True, slots=True)
class CancelOperator:
    region_id: int


class ManualOperator(IntEnum):
    """What :class:`AddOperator` asks for."""

    TransferLeader = 1  # to_store
    MovePeer = 2  # from_store -> to_store
    SplitRegion = 3  # split_key (empty: in half)


@dataclass(frozen=True, slots=True)
class AddOperator:
    """Start a manual operator on a region; unused arguments are 0 / empty."""

    kind: ManualOperator
    region_id: int
    from_store: int = 0
    to_store: int = 0
    split_key: bytes = b""


@dataclass(frozen=True, slots=True)
class SetStoreState:
    """Change a store's administrative state (PD ``store delete`` / ``cancel-delete``).

    ``Offline`` drains the store: its replicas move elsewhere, then it becomes
    ``Tombstone`` by itself. ``Up`` on an offline store cancels the drain.
    ``Tombstone`` directly only for a store that holds no replica.
    """

    store_id: int
    state: StoreState


@dataclass(frozen=True, slots=True)
class GetStoreStatus:
    """What the service knows of a store (0: of every store, by id)."""

    store_id: int = 0


@dataclass(frozen=True, slots=True)
class GetRegionStatus:
    """A region with what its last heartbeat said and its operator."""

    region_id: int


PlacementBody = (
    GetClusterInfo
    | AllocIds
    | PutStore
    | GetStore
    | GetAllStores
    | StoreHeartbeat
    | RegionHeartbeat
    | GetRegion
    | GetRegionById
    | ScanRegions
    | ListOperators
    | GetOperator
    | CancelOperator
    | AddOperator
    | SetStoreState
    | GetStoreStatus
    | GetRegionStatus
)


@dataclass(frozen=True, slots=True)
class PlacementRequest:
    request_id: int
    body: PlacementBody


# -- results ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    cluster_id: int
    bootstrapped: bool


@dataclass(frozen=True, slots=True)
class Ids:
    """The ids ``first .. first + count - 1``."""

    first: int
    count: int

    def range(self) -> range:
        return range(self.first, self.first + self.count)


@dataclass(frozen=True, slots=True)
class Ok:
    """The request was applied."""


@dataclass(frozen=True, slots=True)
class StoreList:
    stores: list[StoreInfo]


@dataclass(frozen=True, slots=True)
class StoreHeartbeatReply:
    """``bootstrap_regions``: regions this store must create (a store that already has the
    region's state ignores it); sent until the store's peer is seen in a region heartbeat."""

    bootstrap_regions: list[Region] = field(default_factory=list)
    #: Regions with a running operator whose last reported leader is on this store: the
    #: store heartbeats them at once, so a new operator's first step does not wait for the
    #: region heartbeat interval (PD pushes it on its heartbeat stream instead).
    operator_regions: list[int] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class RegionHeartbeatReply:
    """Accepted. ``operator_step``: the current step of the region's operator, for the
    leader to propose *with the step's epoch* (None: nothing to do)."""

    operator_step: Step | None = None


@dataclass(frozen=True, slots=True)
class OperatorInfo:
    """An operator as the placement service reports it. Times are the service's clock
    (seconds); ``finished_at`` is None while it runs; ``status`` is an
    :class:`~regions.scheduling.OperatorStatus` value and ``kind`` an
    :class:`~regions.scheduling.OperatorKind` value."""

    region_id: int
    kind: str
    desc: str
    status: str
    step_index: int
    steps: list[Step]
    created_at: float
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class OperatorList:
    operators: list[OperatorInfo]


@dataclass(frozen=True, slots=True)
class RegionRoute:
    """A region and its last reported leader (None: no leader heartbeat since the service
    started)."""

    region: Region
    leader: Peer | None = None


@dataclass(frozen=True, slots=True)
class RegionRoutes:
    routes: list[RegionRoute]


@dataclass(frozen=True, slots=True)
class StoreStatus:
    """A store as the placement service sees it (``multiraft store show``).

    ``liveness`` is ``up``, ``disconnected``, ``down``, ``offline`` or ``tombstone``;
    ``heartbeat_age`` the seconds since its last store heartbeat (None: none since the
    service started); ``stats`` its last report. The counts, size and scores are computed
    from the routing table (every peer counts, learners included), as the schedulers see them.
    """

    info: StoreInfo
    liveness: str
    heartbeat_age: float | None
    stats: StoreStats | None
    region_count: int
    leader_count: int
    region_size: int
    region_score: float
    leader_score: float


@dataclass(frozen=True, slots=True)
class StoreStatusList:
    statuses: list[StoreStatus]


@dataclass(frozen=True, slots=True)
class RegionStatus:
    """A region, what its last accepted heartbeat said (``heartbeat_age`` None: none since
    the service started), and its running operator, else its latest finished one."""

    route: RegionRoute
    down_peers: list[DownPeer] = field(default_factory=list)
    pending_peers: list[Peer] = field(default_factory=list)
    approximate_size: int = 0
    approximate_keys: int = 0
    heartbeat_age: float | None = None
    operator: OperatorInfo | None = None


class PlacementErrorCode(IntEnum):
    NotBootstrapped = 1  # no region exists yet: register stores and wait
    StoreNotFound = 2
    RegionNotFound = 3
    StaleEpoch = 4  # a region heartbeat older than what the service knows
    InvalidArgument = 5  # a request that can never succeed as sent
    StoreTombstoned = 6  # the store was removed; its id cannot come back
    Internal = 7  # the service failed (storage); retry later


@dataclass(frozen=True, slots=True)
class PlacementError:
    """The service's answer when a request fails. A value, not an exception."""

    code: PlacementErrorCode
    message: str


PlacementResult = (
    ClusterInfo
    | Ids
    | Ok
    | StoreInfo
    | StoreList
    | StoreHeartbeatReply
    | RegionHeartbeatReply
    | RegionRoute
    | RegionRoutes
    | OperatorInfo
    | OperatorList
    | StoreStatusList
    | RegionStatus
    | None
)


@dataclass(frozen=True, slots=True)
class PlacementResponse:
    request_id: int
    result: PlacementResult | PlacementError

    @property
    def error(self) -> PlacementError | None:
        return self.result if isinstance(self.result, PlacementError) else None
