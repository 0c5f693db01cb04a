"""The retry policy as a table: each failure, for a read and for a write, and the backoff."""

from __future__ import annotations

import random

import pytest

from multiraft.client import Action, Backoff, decide
from multiraft.transport import (
    ConnectFailed,
    ConnectionLost,
    ConnectionTimeout,
    HandshakeFailed,
    ProtocolError,
    RpcTimeout,
    TransportError,
)
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
from regions.region import Peer

RETRY, UNKNOWN, FAIL = Action.RETRY, Action.INDETERMINATE, Action.FAIL

# (failure, action for a read, action for a write)
TABLE: list[tuple[RequestError | TransportError, Action, Action]] = [
    (NotLeader(1, Peer(2, 2)), RETRY, RETRY),
    (NotLeader(1, None), RETRY, RETRY),
    (EpochNotMatch([]), RETRY, RETRY),
    (RegionNotFound(1), RETRY, RETRY),
    (KeyNotInRegion(b"k", 1, b"", b"a"), RETRY, RETRY),
    (ServerIsBusy("too many requests", 100), RETRY, RETRY),
    (StaleCommand(), RETRY, UNKNOWN),
    (Timeout(), RETRY, UNKNOWN),
    (Internal("disk on fire"), FAIL, UNKNOWN),
    (ConnectFailed("refused"), RETRY, RETRY),
    (HandshakeFailed("wrong cluster"), RETRY, RETRY),
    (ConnectionLost("reset"), RETRY, UNKNOWN),
    (ConnectionTimeout("stuck"), RETRY, UNKNOWN),
    (ProtocolError("garbage"), RETRY, UNKNOWN),
    (RpcTimeout("no answer"), RETRY, UNKNOWN),
]


@pytest.mark.parametrize(
    ("failure", "read", "write"), TABLE, ids=[type(f).__name__ for f, _, _ in TABLE]
)
def test_decide(failure: RequestError | TransportError, read: Action, write: Action) -> None:
    assert decide(failure, write=False) is read
    assert decide(failure, write=True) is write


def test_an_unknown_error_kind_is_never_retried() -> None:
    class NewError(RequestError):
        pass

    assert decide(NewError(), write=True) is Action.INDETERMINATE
    assert decide(NewError(), write=False) is Action.FAIL


def test_backoff_grows_exponentially_with_full_jitter_up_to_the_cap() -> None:
    b = Backoff(base=0.01, cap=0.08, rng=random.Random(7))
    ceilings = [0.01, 0.02, 0.04, 0.08, 0.08, 0.08]
    delays = [b.next_delay() for _ in ceilings]
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert b.attempt == len(ceilings)
    # Seeded: the same sequence again.
    b2 = Backoff(base=0.01, cap=0.08, rng=random.Random(7))
    assert [b2.next_delay() for _ in ceilings] == delays


def test_backoff_floor_and_validation() -> None:
    b = Backoff(base=0.01, cap=0.02, rng=random.Random(1))
    assert b.next_delay(floor=0.3) == 0.3  # a store's ServerIsBusy.backoff_ms wins
    with pytest.raises(ValueError):
        Backoff(base=0, cap=1, rng=random.Random())
    with pytest.raises(ValueError):
        Backoff(base=1, cap=0.5, rng=random.Random())
