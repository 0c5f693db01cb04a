"""The multiraft client: key-value operations on a cluster, for trio and for scripts.

* :class:`Client` (``client.py``): the trio client (``async with Client(addr) as c``):
  ``get``, ``put``, ``delete``, ``cas``, ``scan``, ``batch_put``, plus ``locate``,
  ``list_stores``, ``list_regions``.
* :class:`SyncClient` (``sync.py``): the same, blocking, for scripts.
* ``errors.py``: :class:`ClientError` and its family; ``definite`` tells a failure that
  surely had no effect from an unknown outcome.
* ``policy.py``: which failures are retried (the table), and the backoff.
* ``region_cache.py``: the routing cache.
"""

from multiraft.client.client import (
    DEFAULT_ATTEMPT_TIMEOUT,
    DEFAULT_TIMEOUT,
    Client,
    ClientStatistics,
    PlacementApi,
    StoreConnection,
    StoreConnector,
)
from multiraft.client.errors import (
    ClientError,
    ClusterUnavailable,
    IndeterminateWrite,
    RequestFailed,
    RequestTimeout,
)
from multiraft.client.policy import Action, Backoff, decide
from multiraft.client.region_cache import RegionCache, RegionCacheStatistics
from multiraft.client.sync import SyncClient
from multiraft.wire import ReadMode

__all__ = [
    "DEFAULT_ATTEMPT_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "Action",
    "Backoff",
    "Client",
    "ClientError",
    "ClientStatistics",
    "ClusterUnavailable",
    "IndeterminateWrite",
    "PlacementApi",
    "ReadMode",
    "RegionCache",
    "RegionCacheStatistics",
    "RequestFailed",
    "RequestTimeout",
    "StoreConnection",
    "StoreConnector",
    "SyncClient",
    "decide",
]
