"""Test-only network partitions: drop raft traffic to and from chosen stores.

A store builds one :class:`FaultInjector` only when it runs with fault injection
enabled (``--enable-fault-injection`` / ``fault_injection = true``) and hands the
same object to its :class:`~multiraft.transport.RaftTransport` (outbound) and to
:func:`~multiraft.transport.serve_store` (inbound). Without it, nothing here runs
and the admin command :class:`~multiraft.wire.InjectFaults` is refused.

Rules, for every store id in :attr:`FaultInjector.blocked_stores`:

* outbound raft envelopes to it are dropped by ``RaftTransport.send`` (which
  returns False, reason ``fault_injected``), and snapshots to it fail with
  ``ConnectFailed``;
* inbound raft batches from it are dropped when they arrive, and its snapshot
  streams are cut without an ack.

To cut the link between stores A and B both ways, block B on A *and* A on B (a
nemesis sends one ``InjectFaults`` to each side). KV and admin requests are never
blocked: clients (and the nemesis itself) keep reaching every store.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from multiraft.wire import AdminOk, AdminRequest, AdminResponse, InjectFaults, Internal

__all__ = ["FaultInjector", "FaultStatistics", "refuse_inject_faults"]


@dataclass(frozen=True, slots=True)
class FaultStatistics:
    blocked_stores: frozenset[int]
    dropped_outbound: int  # envelopes refused by send()
    dropped_inbound: int  # envelopes dropped on arrival
    snapshots_refused: int  # snapshot streams refused (either direction)


class FaultInjector:
    """The partition rules of one store. Mutated by tests or by ``InjectFaults``."""

    __slots__ = ("blocked_stores", "dropped_inbound", "dropped_outbound", "snapshots_refused")

    def __init__(self, blocked_stores: Iterable[int] = ()) -> None:
        #: Raft traffic to and from these stores is dropped.
        self.blocked_stores: set[int] = set(blocked_stores)
        self.dropped_outbound = 0
        self.dropped_inbound = 0
        self.snapshots_refused = 0

    def blocks(self, store_id: int) -> bool:
        """Whether traffic with ``store_id`` is dropped."""
        return store_id in self.blocked_stores

    def set_blocked(self, store_ids: Iterable[int]) -> None:
        """Replace the rules: block exactly these stores (empty: heal everything)."""
        self.blocked_stores = set(store_ids)

    def heal(self) -> None:
        self.blocked_stores = set()

    def handle_admin(self, req: AdminRequest) -> AdminResponse:
        """Apply an ``InjectFaults`` request and answer it."""
        if not isinstance(req.command, InjectFaults):
            raise TypeError(f"{type(req.command).__name__} is not InjectFaults")
        self.set_blocked(req.command.blocked_store_ids)
        return AdminResponse(req.request_id, AdminOk())

    def statistics(self) -> FaultStatistics:
        return FaultStatistics(
            frozenset(self.blocked_stores),
            self.dropped_outbound,
            self.dropped_inbound,
            self.snapshots_refused,
        )


def refuse_inject_faults(req: AdminRequest) -> AdminResponse:
    """The answer of a store that runs without fault injection."""
    return AdminResponse(
        req.request_id,
        Internal("fault injection is disabled on this store (start it with "
                 "--enable-fault-injection)"),
    )  # fmt: skip
