"""What one process exports: build info, the standard process collectors, and per-role bundles.

ARCHITECTURE.md section 7: one registry per process, and every long-lived process serves
``/metrics``. A store process builds a :class:`StoreServerMetrics`, the placement service a
:class:`PlacementServerMetrics`; each takes the process's registry (a fresh
``CollectorRegistry()``, never the global one) and hands its members to the components.

The standard client_python collectors (``process_*``: CPU, resident memory, open fds;
``python_info``; ``python_gc_*``) keep their well-known names rather than ours: dashboards and
operators already know them, and they are the first thing to look at when a Python store is
slow (a saturated event loop shows as ``process_cpu_seconds_total`` rising at 1 CPU/s).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import (
    CollectorRegistry,
    GCCollector,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from multiraft import __version__
from multiraft.metrics._common import NAMESPACE
from multiraft.metrics.kv import KvMetrics
from multiraft.metrics.placement import PlacementMetrics
from multiraft.metrics.raft import RaftMetrics
from multiraft.metrics.regions import RegionCollector, RegionSummary
from multiraft.metrics.storage import StorageMetrics
from multiraft.metrics.transport import TransportMetrics


class BuildInfo:
    """``multiraft_build_info{version="..."} 1``: which build a process runs.

    Joined in PromQL to tell old from new processes during a rolling upgrade, e.g.
    ``count by (version) (multiraft_build_info)``.
    """

    def __init__(self, registry: CollectorRegistry, *, version: str = __version__) -> None:
        #: The info metric (client_python appends ``_info`` to the name).
        self.info = Info(
            "build",
            "The multiraft build this process runs.",
            namespace=NAMESPACE,
            registry=registry,
        )
        self.info.info({"version": version})


def register_process_collectors(registry: CollectorRegistry) -> None:
    """Add the standard ``process_*``, ``python_info`` and ``python_gc_*`` collectors."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class StoreServerMetrics:
    """Every metric a store process exports.

    Args:
        registry: the process's registry.
        version: reported in ``multiraft_build_info``.
        process_collectors: also register the standard process/python collectors.

    Example::

        metrics = StoreServerMetrics(CollectorRegistry())
        metrics.watch_regions(store.region_summaries)
        transport = Transport(..., metrics=metrics.transport)
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str = __version__,
        process_collectors: bool = True,
    ) -> None:
        self.registry = registry
        self.build = BuildInfo(registry, version=version)
        self.raft = RaftMetrics(registry)
        self.storage = StorageMetrics(registry)
        self.transport = TransportMetrics(registry)
        self.kv = KvMetrics(registry)
        #: Set by :meth:`watch_regions`.
        self.regions: RegionCollector | None = None
        if process_collectors:
            register_process_collectors(registry)

    def watch_regions(self, regions: Callable[[], Iterable[RegionSummary]]) -> RegionCollector:
        """Register the scrape-time region aggregates, fed by ``regions`` (once per process).

        Raises:
            RuntimeError: already watching (a second collector would duplicate the names).
        """
        if self.regions is not None:
            raise RuntimeError("watch_regions called twice")
        collector = RegionCollector(regions)
        self.registry.register(collector)
        self.regions = collector
        return collector


class PlacementServerMetrics:
    """Every metric the placement service process exports.

    Args:
        registry: the process's registry.
        version: reported in ``multiraft_build_info``.
        process_collectors: also register the standard process/python collectors.
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        version: str = __version__,
        process_collectors: bool = True,
    ) -> None:
        self.registry = registry
        self.build = BuildInfo(registry, version=version)
        self.placement = PlacementMetrics(registry)
        #: The service's own LMDB metadata store.
        self.storage = StorageMetrics(registry)
        if process_collectors:
            register_process_collectors(registry)
