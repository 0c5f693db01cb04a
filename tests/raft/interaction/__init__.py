"""An interaction harness for the Raft core, driven by scenario files.

Port of the idea of etcd-io/raft's ``rafttest`` interaction environment over
our RawNode and MemStorage (raft-rs semantics). See ``env.py`` for the theory
of operation and ``commands.py`` for the command table.
"""

from tests.raft.interaction.env import InteractionEnv as InteractionEnv

__all__ = ["InteractionEnv"]
