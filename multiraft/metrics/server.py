"""Serve ``/metrics`` from a trio program: a minimal HTTP/1.1 responder over ``trio.serve_tcp``.

Why not prometheus_client's ``start_http_server``: it runs a thread that calls the collectors
concurrently with the event loop, while :class:`~multiraft.metrics.RegionCollector` reads store
state that only the trio thread may touch. Here the exposition is generated *in* the event loop,
between two ready rounds, so collectors need no locks. (A scrape of a store with many regions
therefore costs the loop one pass over its replicas; that is the price of consistency.)

Theory of operation: one request per connection. Read the request head (bounded in size and
time), answer, half-close, drain what the client still sends for a moment (so the kernel does
not answer unread bytes with an RST that could destroy the response), close.

Invariants:
    * ``GET``/``HEAD /metrics`` (query string ignored) -> 200 with the text exposition format;
      any other path -> 404; another method on ``/metrics`` -> 405; a malformed request -> 400;
      a head over ``max_request_bytes`` -> 431; a head not received within
      ``request_timeout`` -> 408; more than ``max_connections`` at once -> 503.
    * Every response carries ``Content-Length`` and ``Connection: close``.
    * An error on one connection (a reset, a timeout, a failing collector) is logged and ends
      that connection only: ``serve_tcp`` would otherwise let it crash the server.
    * ``_created`` series are left out by default: they double the series count of every
      counter and histogram child and no dashboard here uses them.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from http import HTTPStatus
from typing import Final

import trio
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

#: Largest request head accepted (request line + headers). A Prometheus scrape is ~300 B.
MAX_REQUEST_BYTES: Final = 8 * 1024
#: Seconds a client has to send its request head, and the server to send its answer.
REQUEST_TIMEOUT: Final = 10.0
#: Connections served at once; more are answered 503 (scrapers are few).
MAX_CONNECTIONS: Final = 64
#: After answering, how long and how much to drain from a client that keeps sending.
LINGER_SECONDS: Final = 1.0
LINGER_BYTES: Final = 64 * 1024

#: The exposition ``generate_latest`` produces is the 0.0.4 text format (client_python pairs
#: the two the same way when it negotiates); every Prometheus version parses it.
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4

METRICS_PATH: Final = "/metrics"

_TOKEN = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/1\.[0-9]")
_HEADER_LINE = re.compile(_TOKEN + rb":[\t\x20-\x7e\x80-\xff]*")
#: A byte that cannot appear in a request line: lets binary garbage (a TLS hello, a raft
#: frame sent to the wrong port) be refused at once instead of after the timeout.
_NOT_REQUEST_LINE = re.compile(rb"[^\x20-\x7e]")


class _HttpError(Exception):
    """The request cannot be served; answer with ``status``."""

    def __init__(self, status: HTTPStatus) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    path: str  # without the query string


@dataclass(frozen=True, slots=True)
class _Response:
    status: HTTPStatus
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    allow: str | None = None

    def encode(self, *, head_only: bool = False) -> bytes:
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
            "Connection: close",
        ]
        if self.allow is not None:
            lines.append(f"Allow: {self.allow}")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
        return head if head_only else head + self.body


def _error(status: HTTPStatus, **kw: str) -> _Response:
    return _Response(status, f"{status.value} {status.phrase}\n".encode("ascii"), **kw)


def parse_request_head(head: bytes) -> _Request:
    """Parse a request head (everything before the blank line).

    Raises:
        _HttpError: 400 when the request line or a header line is malformed.
    """
    request_line, *header_lines = head.split(b"\r\n")
    match = _REQUEST_LINE.fullmatch(request_line)
    if match is None:
        raise _HttpError(HTTPStatus.BAD_REQUEST)
    for line in header_lines:
        if _HEADER_LINE.fullmatch(line) is None:
            raise _HttpError(HTTPStatus.BAD_REQUEST)
    method = match.group(1).decode("ascii")
    target = match.group(2).decode("ascii")
    return _Request(method, target.partition("?")[0])


async def _read_head(stream: trio.abc.ReceiveStream, max_bytes: int) -> bytes | None:
    """Read up to the blank line ending the head; None if the client sent nothing at all.

    Raises:
        _HttpError: 400 (malformed or truncated), 431 (over ``max_bytes``).
    """
    buf = bytearray()
    while True:
        # RFC 9112 section 2.2: ignore empty lines received before the request line.
        while buf.startswith(b"\r\n"):
            del buf[:2]
        end = buf.find(b"\r\n\r\n")
        if 0 <= end <= max_bytes:
            return bytes(buf[:end])
        line_end = buf.find(b"\r\n")
        # Until its CRLF arrives, the request line is the whole buffer, less a CR that may be
        # the first half of that CRLF.
        first_line = buf[:line_end] if line_end >= 0 else buf.removesuffix(b"\r")
        # Refuse as soon as the request line is visibly wrong, not after the timeout.
        if _NOT_REQUEST_LINE.search(first_line) or (
            line_end >= 0 and _REQUEST_LINE.fullmatch(first_line) is None
        ):
            raise _HttpError(HTTPStatus.BAD_REQUEST)
        if len(buf) > max_bytes:
            raise _HttpError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE)
        chunk = await stream.receive_some(max_bytes + 5 - len(buf))  # enough to exceed by 1
        if not chunk:
            if buf:
                raise _HttpError(HTTPStatus.BAD_REQUEST)  # closed mid-request
            return None
        buf += chunk


class _WithoutCreated:
    """A view of a collector without the ``_created`` samples of counters and histograms."""

    _TYPES: Final = frozenset({"counter", "histogram", "summary"})

    def __init__(self, inner: Collector) -> None:
        self._inner = inner

    def collect(self) -> Iterator[Metric]:
        for family in self._inner.collect():
            if family.type not in self._TYPES:
                yield family
                continue
            clone = Metric(family.name, family.documentation, family.type, family.unit)
            clone.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield clone


class _MetricsServer:
    """Per-listener state: the exporter and the connection count."""

    def __init__(
        self,
        registry: Collector,
        *,
        max_request_bytes: int,
        request_timeout: float,
        max_connections: int,
        created_series: bool,
    ) -> None:
        self.exporter: Collector = registry if created_series else _WithoutCreated(registry)
        self.max_request_bytes = max_request_bytes
        self.request_timeout = request_timeout
        self.max_connections = max_connections
        self.active = 0

    async def handle(self, stream: trio.SocketStream) -> None:
        """The ``serve_tcp`` handler: never lets a per-connection exception escape."""
        self.active += 1
        try:
            await self._serve(stream)
        except Exception as exc:
            # serve_tcp lets a handler's exception crash the whole server; a scraper that
            # resets its connection or times out must only lose its own request.
            log.debug("metrics connection ended with %r", exc)
        finally:
            self.active -= 1
            await trio.aclose_forcefully(stream)

    async def _serve(self, stream: trio.SocketStream) -> None:
        head_only = False
        if self.active > self.max_connections:
            response = _error(HTTPStatus.SERVICE_UNAVAILABLE)
        else:
            try:
                with trio.fail_after(self.request_timeout):
                    head = await _read_head(stream, self.max_request_bytes)
                if head is None:
                    return  # connected and closed without a request (a port probe)
                request = parse_request_head(head)
                head_only = request.method == "HEAD"
                response = self._route(request)
            except _HttpError as exc:
                response = _error(exc.status)
            except trio.TooSlowError:
                response = _error(HTTPStatus.REQUEST_TIMEOUT)
        with trio.fail_after(self.request_timeout):
            await stream.send_all(response.encode(head_only=head_only))
            await stream.send_eof()
        await _linger(stream)

    def _route(self, request: _Request) -> _Response:
        if request.path != METRICS_PATH:
            return _error(HTTPStatus.NOT_FOUND)
        if request.method not in ("GET", "HEAD"):
            return _error(HTTPStatus.METHOD_NOT_ALLOWED, allow="GET, HEAD")
        try:
            # Synchronous, on the trio thread, on purpose (see the module docstring).
            body = generate_latest(self.exporter)
        except Exception:
            log.exception("generating the metrics exposition failed")
            return _error(HTTPStatus.INTERNAL_SERVER_ERROR)
        return _Response(HTTPStatus.OK, body, CONTENT_TYPE)


async def _linger(stream: trio.abc.ReceiveStream) -> None:
    """Drain the client's leftovers for a moment before closing (avoids an RST on close)."""
    drained = 0
    with trio.move_on_after(LINGER_SECONDS):
        while drained < LINGER_BYTES:
            data = await stream.receive_some(LINGER_BYTES)
            if not data:
                return
            drained += len(data)


async def serve_metrics(
    registry: Collector,
    host: str,
    port: int,
    *,
    max_request_bytes: int = MAX_REQUEST_BYTES,
    request_timeout: float = REQUEST_TIMEOUT,
    max_connections: int = MAX_CONNECTIONS,
    created_series: bool = False,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``registry`` at ``http://host:port/metrics`` until cancelled.

    Args:
        registry: the process's registry (any prometheus_client collector).
        host: address to bind, e.g. ``"127.0.0.1"`` or ``"0.0.0.0"``.
        port: port to bind; 0 lets the OS choose (read it from the listeners).
        max_request_bytes: largest request head accepted (larger: 431).
        request_timeout: seconds to receive a request head and to send the answer.
        max_connections: connections served at once (more: 503).
        created_series: also export the ``_created`` series of counters and histograms.
        task_status: for ``nursery.start``, which returns the bound listeners.

    Example::

        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(serve_metrics, registry, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
    """
    server = _MetricsServer(
        registry,
        max_request_bytes=max_request_bytes,
        request_timeout=request_timeout,
        max_connections=max_connections,
        created_series=created_series,
    )
    await trio.serve_tcp(server.handle, port, host=host, task_status=task_status)
