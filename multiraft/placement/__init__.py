"""The placement service (the PD role): cluster id, stores, ids, bootstrap, heartbeats, routing.

* :class:`Cluster` (``cluster.py``): the service's state and the handling of every request;
  persisted through :class:`ClusterMeta` (``cluster_meta.py``, its own LMDB environment),
  ids from the windowed :class:`IdAllocator` (``id_alloc.py``), the key-ordered routing
  table :class:`~regions.region_map.RegionMap` (shared with the store), heartbeat acceptance (``heartbeats.py``) and
  the first region (``bootstrap.py``); scheduling, manual operators, store drains and
  tombstones and the status reports in its :class:`~multiraft.placement.cluster_admin.ClusterAdmin`
  mixin (``cluster_admin.py``), whose rules are pure functions in ``admin.py``, and the
  operator controller (``scheduler.py``).
* :class:`PlacementServer` (``service.py``): the TCP server; :func:`run_placement`
  (``main.py``): the whole process (listener, ``/metrics``, housekeeping).
* :class:`PlacementClient` (``client.py``): the trio client stores and clients use.
* The protocol's records are in :mod:`multiraft.wire.placement_messages`; the ones a
  caller needs are re-exported here.
"""

from multiraft.placement.client import PlacementClient
from multiraft.placement.cluster import Cluster, ClusterStatistics
from multiraft.placement.cluster_meta import ClusterMeta, MetaCorrupted
from multiraft.placement.errors import (
    PlacementClientError,
    PlacementFailure,
    PlacementRequestError,
    PlacementUnavailable,
    WrongCluster,
)
from multiraft.placement.id_alloc import IdAllocator
from multiraft.placement.main import ListenError, PlacementEndpoints, run_placement
from multiraft.placement.service import (
    PlacementServer,
    PlacementServerLimits,
    PlacementServerStatistics,
)
from multiraft.wire.placement_messages import (
    ClusterInfo,
    DownPeer,
    Ids,
    PlacementErrorCode,
    RegionRoute,
    StoreHeartbeatReply,
    StoreInfo,
    StoreState,
    StoreStats,
)
from regions.region_map import RegionMap

__all__ = [
    "Cluster",
    "ClusterInfo",
    "ClusterMeta",
    "ClusterStatistics",
    "DownPeer",
    "IdAllocator",
    "Ids",
    "ListenError",
    "MetaCorrupted",
    "PlacementClient",
    "PlacementClientError",
    "PlacementEndpoints",
    "PlacementErrorCode",
    "PlacementFailure",
    "PlacementRequestError",
    "PlacementServer",
    "PlacementServerLimits",
    "PlacementServerStatistics",
    "PlacementUnavailable",
    "RegionMap",
    "RegionRoute",
    "StoreHeartbeatReply",
    "StoreInfo",
    "StoreState",
    "StoreStats",
    "WrongCluster",
    "run_placement",
]
