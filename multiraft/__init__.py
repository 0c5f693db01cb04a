"""multiraft: a sharded, replicated key-value storage engine.

The key space is cut into regions, each replicated by its own Raft group; a store
process hosts many region replicas over one transport and one LMDB environment.
The sans-IO Raft core lives in :mod:`multiraft.raft`.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
