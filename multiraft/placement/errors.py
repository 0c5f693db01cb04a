"""The placement package's exceptions, on the service side and on the client side.

Service side: a request handler raises :class:`PlacementFailure`; the server turns it into a
:class:`~multiraft.wire.placement_messages.PlacementError` *value* for the caller and keeps
serving.

Client side (:class:`~multiraft.placement.client.PlacementClient`), all
:class:`PlacementClientError`:

* :class:`PlacementUnavailable`: the service could not be reached or did not answer in time
  (retrying later may succeed);
* :class:`WrongCluster`: the service at that address belongs to another cluster (a
  configuration error: retrying will not help);
* :class:`PlacementRequestError`: the service answered the request with an error (``code``
  says which, e.g. ``StaleEpoch`` or ``NotBootstrapped``).
"""

from __future__ import annotations

from multiraft.wire.placement_messages import PlacementErrorCode

__all__ = [
    "PlacementClientError",
    "PlacementFailure",
    "PlacementRequestError",
    "PlacementUnavailable",
    "WrongCluster",
]


class PlacementFailure(Exception):
    """A request cannot be served; becomes a ``PlacementError(code, message)`` answer."""

    def __init__(self, code: PlacementErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class PlacementClientError(Exception):
    """Base of every error :class:`~multiraft.placement.client.PlacementClient` raises."""


class PlacementUnavailable(PlacementClientError):
    """The placement service cannot be reached, or did not answer within the deadline."""


class WrongCluster(PlacementClientError):
    """The service at the address belongs to another cluster than the client expects."""

    def __init__(self, address: str, expected: int, detail: str = "") -> None:
        msg = f"the placement service at {address} is not in cluster {expected:#x}"
        super().__init__(f"{msg} ({detail})" if detail else msg)
        self.address = address
        self.expected = expected


class PlacementRequestError(PlacementClientError):
    """The service refused the request: ``code`` and ``message`` are its answer."""

    def __init__(self, code: PlacementErrorCode, message: str) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
