"""The Raft core's errors: whose fault it was, in a small named hierarchy.

``RaftError`` subclasses are recoverable answers to a call (a dropped proposal,
a message that cannot be stepped). ``RaftFatal`` is raft-rs's ``panic!``: an
invariant is broken, the replica must stop, and no loop may swallow it.
A call that raises leaves the node's state unchanged.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base of every recoverable Raft error."""


class RaftFatal(Exception):
    """A broken invariant (raft-rs ``fatal!``/``panic!``): the replica is unusable.

    Deliberately not a ``RaftError``, so ``except RaftError`` never hides it.
    """


class StepLocalMsg(RaftError):
    def __init__(self) -> None:
        super().__init__("raft: cannot step raft local message")


class StepPeerNotFound(RaftError):
    def __init__(self) -> None:
        super().__init__("raft: cannot step as peer not found")


class ProposalDropped(RaftError):
    def __init__(self) -> None:
        super().__init__("raft: proposal dropped")


class RequestSnapshotDropped(RaftError):
    def __init__(self) -> None:
        super().__init__("raft: request snapshot dropped")


class ConfigInvalid(RaftError):
    """A Config failed validation; the message says which rule."""


class ConfChangeError(RaftError):
    """A membership change that would break a configuration invariant."""


class StorageError(RaftError):
    """Base of the errors a Storage may raise (raft-rs ``StorageError``)."""


class Compacted(StorageError):
    def __init__(self) -> None:
        super().__init__("log compacted")


class Unavailable(StorageError):
    def __init__(self) -> None:
        super().__init__("log unavailable")


class LogTemporarilyUnavailable(StorageError):
    def __init__(self) -> None:
        super().__init__("log is temporarily unavailable")


class SnapshotOutOfDate(StorageError):
    def __init__(self) -> None:
        super().__init__("snapshot out of date")


class SnapshotTemporarilyUnavailable(StorageError):
    def __init__(self) -> None:
        super().__init__("snapshot is temporarily unavailable")


class StorageOther(StorageError):
    """Any other storage failure; the Raft core treats it as fatal for the group."""
