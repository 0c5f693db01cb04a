"""The store: one process hosting many region replicas over one engine and one transport.

* :mod:`~multiraft.store.ready_loop`: the ready round (one write batch and one fsync per
  round for every dirty region) and everything it drives;
* :mod:`~multiraft.store.apply`: committed entries into the round's batch, exactly once;
* :mod:`~multiraft.store.replica`, :mod:`~multiraft.store.router`,
  :mod:`~multiraft.store.peer_create`: the replicas and how they come to exist;
* :mod:`~multiraft.store.proposals`, :mod:`~multiraft.store.reads`: the waiting clients;
* :mod:`~multiraft.store.kv_service`: the transport's InboundHandler;
* :mod:`~multiraft.store.snapshots`, :mod:`~multiraft.store.placement_loop`;
* :mod:`~multiraft.store.store`: process wiring and :func:`run_store`.
"""

from multiraft.store.ready_loop import ReadyLoop, StoreFatal
from multiraft.store.replica import RaftSettings, Replica
from multiraft.store.router import Router
from multiraft.store.store import (
    Store,
    StoreEndpoints,
    StoreStartError,
    ensure_store_ident,
    open_engine,
    run_store,
)

__all__ = [
    "RaftSettings",
    "ReadyLoop",
    "Replica",
    "Router",
    "Store",
    "StoreEndpoints",
    "StoreFatal",
    "StoreStartError",
    "ensure_store_ident",
    "open_engine",
    "run_store",
]
