"""Quorum arithmetic: which log index a set of voters has committed, and who won a vote.

A port of raft-rs ``src/quorum.rs`` (itself etcd's ``quorum/``). Two kinds of
configuration answer the same two questions:

* :class:`MajorityConfig` - a plain set of voters; a decision needs a strict
  majority of them.
* :class:`JointConfig` - two majority configs (``incoming``, ``outgoing``) used
  during joint consensus (Raft thesis §4.3); a decision needs *both*
  majorities.

Invariants shared by both:

* An empty majority config commits everything (``NO_LIMIT``) and wins every
  vote, so that a joint config with an empty half behaves exactly like its
  other half.
* Nothing here mutates the indexer or the votes it is handed; the answers are
  pure functions of their inputs.

The shared vocabulary (:class:`VoteResult`, :class:`Index`,
:class:`AckedIndexer`) lives in :mod:`.majority`, which :mod:`.joint` builds on.
"""

from multiraft.raft.quorum.joint import JointConfig as JointConfig
from multiraft.raft.quorum.majority import AckedIndexer as AckedIndexer
from multiraft.raft.quorum.majority import AckIndexer as AckIndexer
from multiraft.raft.quorum.majority import Index as Index
from multiraft.raft.quorum.majority import MajorityConfig as MajorityConfig
from multiraft.raft.quorum.majority import VoteResult as VoteResult
from multiraft.raft.quorum.majority import majority as majority

__all__ = [
    "AckIndexer",
    "AckedIndexer",
    "Index",
    "JointConfig",
    "MajorityConfig",
    "VoteResult",
    "majority",
]
