"""Every Prometheus metric of multiraft, defined in one place, and a trio ``/metrics`` server.

ARCHITECTURE.md section 7 and ``docs/metrics.md`` (the table of every metric). One module per
subsystem; each defines a class that takes a ``CollectorRegistry`` and registers its metrics
there, as attributes the components update:

================  =========================  =======================================
class             names                      emitted by
================  =========================  =======================================
RaftMetrics       ``multiraft_raft_*``       store: ready loop, router, apply
RegionCollector   ``multiraft_store_*``      store: per-region state, at scrape time
StorageMetrics    ``multiraft_storage_*``    storage engine (store and placement)
TransportMetrics  ``multiraft_transport_*``  store-to-store transport
KvMetrics         ``multiraft_kv_*``         store: KV service handlers
PlacementMetrics  ``multiraft_placement_*``  placement service
BuildInfo         ``multiraft_build_info``   every process
================  =========================  =======================================

:class:`StoreServerMetrics` and :class:`PlacementServerMetrics` bundle what each process
exports; :func:`serve_metrics` serves a registry from a trio nursery.

Rules (enforced when a metric is defined, see ``_common.py``, and by ``tests/test_metrics.py``):
names ``multiraft_<subsystem>_<name>_<unit>`` built from client_python's
namespace/subsystem/unit arguments, base units (``_seconds``, ``_bytes``), counters end in
``_total``, and **no label carries a region or peer id**. Nothing is created at import time
and nothing touches the global registry.

Example::

    registry = CollectorRegistry()
    metrics = StoreServerMetrics(registry)
    metrics.raft.proposals.labels(result="ok").inc()
    with metrics.storage.write_txn_duration.time():
        txn.commit()
"""

from multiraft.metrics._common import FORBIDDEN_LABELS, NAMESPACE
from multiraft.metrics.kv import KvMetrics
from multiraft.metrics.placement import PlacementMetrics
from multiraft.metrics.process import (
    BuildInfo,
    PlacementServerMetrics,
    StoreServerMetrics,
    register_process_collectors,
)
from multiraft.metrics.raft import RaftMetrics
from multiraft.metrics.regions import RegionCollector, RegionRole, RegionSummary, region_role
from multiraft.metrics.server import serve_metrics
from multiraft.metrics.storage import StorageMetrics
from multiraft.metrics.transport import TransportMetrics

__all__ = [
    "FORBIDDEN_LABELS",
    "NAMESPACE",
    "BuildInfo",
    "KvMetrics",
    "PlacementMetrics",
    "PlacementServerMetrics",
    "RaftMetrics",
    "RegionCollector",
    "RegionRole",
    "RegionSummary",
    "StorageMetrics",
    "StoreServerMetrics",
    "TransportMetrics",
    "region_role",
    "register_process_collectors",
    "serve_metrics",
]
