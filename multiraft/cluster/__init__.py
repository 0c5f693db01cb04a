"""Local clusters: the machinery behind ``multiraft cluster up|status|down``.

* :mod:`~multiraft.cluster.spec`: the cluster file ``<data-dir>/cluster.json``;
* :mod:`~multiraft.cluster.supervisor`: background processes (start, recognise, stop)
  and free ports;
* :mod:`~multiraft.cluster.local`: :class:`LocalCluster`, which starts a placement
  service and N stores, waits until a write succeeds, and stops them;
* :mod:`~multiraft.cluster.status`: what a local cluster's processes, placement service
  and stores say;
* :mod:`~multiraft.cluster.placement_settings`: the ``placement.toml`` ``cluster up``
  writes (local-demo down time and operator timeouts, ``--schedule``).
"""

from multiraft.cluster.local import (
    ClusterError,
    DownResult,
    LocalCluster,
    UpResult,
    placement_argv,
    store_argv,
)
from multiraft.cluster.spec import CLUSTER_FILE, ClusterFileError, ClusterSpec, ProcessSpec
from multiraft.cluster.status import ClusterStatus, ProcessState, cluster_status, store_status

__all__ = [
    "CLUSTER_FILE",
    "ClusterError",
    "ClusterFileError",
    "ClusterSpec",
    "ClusterStatus",
    "DownResult",
    "LocalCluster",
    "ProcessSpec",
    "ProcessState",
    "UpResult",
    "cluster_status",
    "placement_argv",
    "store_argv",
    "store_status",
]
