"""The retry policy: what the client does after each kind of failed attempt.

Theory of operation: one client call (``get``, ``put``, ...) makes attempts, each to one
region's leader as the client believes it, until one succeeds, the deadline passes, or an
attempt ends in a way that forbids another. :func:`decide` maps the failure of one attempt
to an :class:`Action`; it is a pure function so the table below is tested as a table.

============================== ============ ============== ========================================
failure of the attempt         read         write          why, and what the client does first
============================== ============ ============== ========================================
``NotLeader``                  RETRY        RETRY          not proposed; go to the hint (at once),
                                                           else to the next peer
``EpochNotMatch``              RETRY        RETRY          refused at propose or apply time; replace
                                                           cached regions with the current ones
``RegionNotFound``             RETRY        RETRY          no such peer on that store; reload
``KeyNotInRegion``             RETRY        RETRY          refused; the range moved, reload
``ServerIsBusy``               RETRY        RETRY          refused before proposing; back off
                                                           (at least the store's ``backoff_ms``)
``StaleCommand``               RETRY        INDETERMINATE  the proposal was dropped, but its entry may
                                                           have committed under the new leader
``Timeout`` (store)            RETRY        INDETERMINATE  the store gave up waiting: unknown
``Internal``                   FAIL         INDETERMINATE  a store bug; a write may have been proposed
``ConnectFailed``              RETRY        RETRY          never connected: nothing was sent; try
``HandshakeFailed``                                        another peer, reload the store address
``ConnectionLost`` (incl.      RETRY        INDETERMINATE  the request may have been sent and
timeout, protocol error)                                   proposed before the connection broke
``RpcTimeout``                 RETRY        INDETERMINATE  sent, no answer in time
============================== ============ ============== ========================================

Every retry waits for a :class:`Backoff` delay (exponential, full jitter), except a few
(``MAX_FAST_RETRIES`` per call) that go at once because they go somewhere new: to a *new*
leader hint, with the fresh regions of an ``EpochNotMatch``, or to another peer after a
connection failure. All of them stop at the call's deadline, which raises
:class:`~multiraft.client.errors.RequestTimeout`. INDETERMINATE raises
:class:`~multiraft.client.errors.IndeterminateWrite` at once: a write whose outcome is
unknown is never retried, because a second apply could land after a newer write by
another client and undo it (not linearizable). FAIL raises
:class:`~multiraft.client.errors.RequestFailed`.
"""

from __future__ import annotations

import random
from enum import Enum
from typing import Final

from multiraft.transport.errors import ConnectFailed, HandshakeFailed, TransportError
from multiraft.wire import (
    EpochNotMatch,
    Internal,
    KeyNotInRegion,
    NotLeader,
    RegionNotFound,
    RequestError,
    ServerIsBusy,
    StaleCommand,
    Timeout,
)

__all__ = ["Action", "Backoff", "decide", "describe_failure"]


class Action(Enum):
    """What to do after a failed attempt."""

    #: The attempt certainly had no effect: try again (after updating the cache).
    RETRY = "retry"
    #: A write's outcome is unknown: stop, raise IndeterminateWrite.
    INDETERMINATE = "indeterminate"
    #: Give up: retrying cannot help (raise RequestFailed).
    FAIL = "fail"


#: Request errors that prove the request was not (and will not be) applied.
_DEFINITE_REFUSALS: Final = (NotLeader, EpochNotMatch, RegionNotFound, KeyNotInRegion, ServerIsBusy)
#: Request errors after which a write may still have been applied.
_UNKNOWN_OUTCOMES: Final = (StaleCommand, Timeout)


def decide(failure: RequestError | TransportError, *, write: bool) -> Action:
    """The action after an attempt failed with ``failure`` (a store's answer or a
    transport exception). See the module docstring for the table.

    Args:
        failure: the :class:`~multiraft.wire.RequestError` the store answered, or the
            :class:`~multiraft.transport.errors.TransportError` the attempt raised.
        write: whether the operation changes data (put, delete, cas, batch_put).
    """
    if isinstance(failure, _DEFINITE_REFUSALS):
        return Action.RETRY
    if isinstance(failure, (ConnectFailed, HandshakeFailed)):
        return Action.RETRY  # never got as far as sending the request
    if isinstance(failure, Internal):
        return Action.INDETERMINATE if write else Action.FAIL
    if isinstance(failure, (*_UNKNOWN_OUTCOMES, TransportError)):
        return Action.INDETERMINATE if write else Action.RETRY
    # An error kind this client does not know (a newer store): be safe.
    return Action.INDETERMINATE if write else Action.FAIL


def describe_failure(failure: RequestError | TransportError) -> str:
    """A short human-readable account of one failed attempt, for error messages."""
    if isinstance(failure, TransportError):
        return str(failure)
    if isinstance(failure, NotLeader):
        hint = "no leader known" if failure.leader is None else (
            f"leader hint: peer {failure.leader.id} on store {failure.leader.store_id}")  # fmt: skip
        return f"region {failure.region_id}: not leader ({hint})"
    if isinstance(failure, EpochNotMatch):
        ids = ", ".join(str(r.id) for r in failure.current_regions) or "none"
        return f"stale region epoch (current regions: {ids})"
    if isinstance(failure, RegionNotFound):
        return f"region {failure.region_id} not found on that store"
    if isinstance(failure, KeyNotInRegion):
        return f"key {failure.key!r} not in region {failure.region_id}"
    if isinstance(failure, ServerIsBusy):
        return f"store busy ({failure.reason})"
    if isinstance(failure, StaleCommand):
        return "proposal dropped by a leadership change (StaleCommand)"
    if isinstance(failure, Timeout):
        return "the store timed out"
    if isinstance(failure, Internal):
        return f"store internal error: {failure.message}"
    return type(failure).__name__


class Backoff:
    """Exponential backoff with full jitter: attempt ``n`` (from 0) waits a uniform random
    time in ``[0, min(cap, base * 2**n)]``, and never less than ``floor`` (e.g. a store's
    ``ServerIsBusy.backoff_ms``).

    Args:
        base: the first attempt's maximum delay, seconds.
        cap: the largest maximum delay, seconds.
        rng: the jitter's source; pass a seeded ``random.Random`` in tests only.
    """

    __slots__ = ("_rng", "attempt", "base", "cap")

    def __init__(self, *, base: float = 0.01, cap: float = 0.5, rng: random.Random) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"need 0 < base <= cap, got base={base} cap={cap}")
        self.base = base
        self.cap = cap
        self._rng = rng
        #: Backoffs taken so far.
        self.attempt = 0

    def reset(self) -> None:
        """Start again from the first (shortest) delay."""
        self.attempt = 0

    def next_delay(self, *, floor: float = 0.0) -> float:
        """The next delay in seconds (and count it)."""
        ceiling = min(self.cap, self.base * 2 ** min(self.attempt, 32))
        self.attempt += 1
        return max(floor, self._rng.uniform(0.0, ceiling))
