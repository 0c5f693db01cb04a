"""The client's errors: what a caller of :class:`~multiraft.client.Client` can see.

Hierarchy::

    ClientError                 base; ``definite`` says whether the operation surely had no effect
    ├── ClusterUnavailable      the placement service, or every store that could serve the
    │                           request, cannot be reached (the message names the address)
    ├── RequestFailed           the cluster refused the request and retrying cannot help
    │                           (a store's internal error on a read, an invalid argument)
    ├── RequestTimeout          the call's deadline passed
    └── IndeterminateWrite      a write's attempt ended without a definite answer
                                (StaleCommand, a store Timeout, a connection lost after sending)

**Definite failures and unknown outcomes.** A write that fails may still have been
applied, or may still be applied later: the request can be in a store's Raft log when the
answer is lost. Every error therefore carries :attr:`ClientError.definite`:

* ``definite=True``: the operation certainly did not take effect, and never will. Record it
  as ``fail`` in a Jepsen-style history.
* ``definite=False``: the outcome is unknown; the operation may take effect once, at any
  time after it was invoked, or never. Record it as ``info``.

Reads change nothing, so every error from a read is definite. For writes,
:class:`IndeterminateWrite` is never definite, :class:`RequestTimeout` is definite only
when no attempt was in doubt when the deadline passed (e.g. the client was still
looking for a leader), and :class:`ClusterUnavailable` is definite (nothing was sent).

There is no ``KeyError``: a missing key is a ``None`` value, not an error.
"""

from __future__ import annotations

__all__ = [
    "ClientError",
    "ClusterUnavailable",
    "IndeterminateWrite",
    "RequestFailed",
    "RequestTimeout",
]


class ClientError(Exception):
    """Base of every error the client raises.

    Attributes:
        definite: True if the operation certainly did not take effect (a history records
            it as ``fail``); False if it may have (``info``).
    """

    def __init__(self, message: str, *, definite: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.definite = definite

    def __str__(self) -> str:
        return self.message


class ClusterUnavailable(ClientError):
    """The placement service, or every store able to serve the request, is unreachable.

    The message names the address that failed and why (refused, timed out, another
    cluster). Nothing was applied: raised only before any attempt could reach a store,
    so it is always definite.

    Attributes:
        address: the address that could not be reached (empty if several were tried).
    """

    def __init__(self, message: str, *, address: str = "") -> None:
        super().__init__(message, definite=True)
        self.address = address


class RequestFailed(ClientError):
    """The cluster refused the request and retrying it would not help.

    Raised for a store's internal error on a read, and for requests the client can tell
    are invalid before sending them. A write that a store fails internally is reported
    as :class:`IndeterminateWrite` instead, since it may have been proposed.
    """


class RequestTimeout(ClientError):
    """The call's deadline passed before it completed.

    **For a write the outcome is UNKNOWN** unless :attr:`definite` is True: the request may
    have reached a leader and been proposed, and can still commit and apply after this
    error is raised. ``definite`` is True only when no attempt was in doubt at the
    deadline (every attempt so far had been refused with a definite error, or none had
    been sent). For a read it is always True: a read changes nothing.

    Attributes:
        last_error: what the last failed attempt said, for the message (may be empty).
    """

    def __init__(self, message: str, *, definite: bool = False, last_error: str = "") -> None:
        super().__init__(message, definite=definite)
        self.last_error = last_error


class IndeterminateWrite(ClientError):
    """A write attempt ended without a definite answer; the write is NOT retried.

    Raised when a store answered ``StaleCommand`` (the proposal was dropped, but its entry
    may have committed under the new leader) or ``Timeout``, when a store failed internally
    after receiving the write, or when the connection was lost or timed out after the
    request was sent. The write may have been applied, may still be applied later, or
    may never be. Retrying blindly could apply it twice, and a late second apply can
    overwrite a newer write by another client, so the client leaves that choice to the
    caller. Never definite.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message, definite=False)
