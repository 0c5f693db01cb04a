"""The metrics catalogue follows the naming and cardinality rules, and ``/metrics`` is served.

ARCHITECTURE.md section 7 and ``multiraft/metrics``: names ``multiraft_<subsystem>_<name>_<unit>``,
base units, counters ending in ``_total``, no region or peer label; every metric listed in
``docs/metrics.md``; alert rules and dashboards only name metrics that exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import prometheus_client
import pytest
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import DuplicateTimeseries

from multiraft.metrics import (
    FORBIDDEN_LABELS,
    BuildInfo,
    KvMetrics,
    PlacementMetrics,
    PlacementServerMetrics,
    RaftMetrics,
    RegionCollector,
    RegionSummary,
    StorageMetrics,
    StoreServerMetrics,
    TransportMetrics,
    region_role,
    serve_metrics,
)
from multiraft.metrics._common import MetricFactory, check_definition
from multiraft.raft import StateRole

REPO = Path(__file__).resolve().parent.parent

SUBSYSTEMS = {"raft", "store", "storage", "transport", "kv", "placement", "build"}
#: The standard client_python collectors keep their well-known names (see process.py).
STANDARD_PREFIXES = ("process_", "python_")
#: Unit-like suffixes that are not base units.
NON_BASE_UNITS = re.compile(
    r"_(ms|us|ns|millis|milliseconds|microseconds|nanoseconds|secs|minutes|hours|days|"
    r"kb|mb|gb|kib|mib|gib|kilobytes|megabytes|percent|bits)$"
)

METRIC_CLASSES: list[Callable[[CollectorRegistry], object]] = [
    RaftMetrics,
    StorageMetrics,
    TransportMetrics,
    KvMetrics,
    PlacementMetrics,
    BuildInfo,
    StoreServerMetrics,
    PlacementServerMetrics,
]


def _no_regions() -> list[RegionSummary]:
    return []


def process_registries() -> list[CollectorRegistry]:
    """What a store process and the placement service export, each in its own registry."""
    store = CollectorRegistry()
    StoreServerMetrics(store).watch_regions(_no_regions)
    placement = CollectorRegistry()
    PlacementServerMetrics(placement)
    return [store, placement]


def our_families(registry: CollectorRegistry) -> Iterator[Metric]:
    for family in registry.collect():
        if not family.name.startswith(STANDARD_PREFIXES):
            yield family


def exposed_names(registries: Iterable[CollectorRegistry]) -> dict[str, str]:
    """Exposed family name -> type, for every metric of ours (``_total``/``_info`` included)."""
    names: dict[str, str] = {}
    for registry in registries:
        for family in our_families(registry):
            suffix = {"counter": "_total", "info": "_info"}.get(family.type, "")
            names[family.name + suffix] = family.type
    return names


def labelled_wrappers(obj: object) -> Iterator[Counter | Gauge | Histogram]:
    """Every client_python metric held by a metrics class (nested bundles included)."""
    for value in vars(obj).values():
        if isinstance(value, Counter | Gauge | Histogram):
            yield value
        elif type(value).__module__.startswith("multiraft.metrics"):
            yield from labelled_wrappers(value)


# -- naming and cardinality ---------------------------------------------------------------


@pytest.mark.parametrize("registry", process_registries(), ids=["store", "placement"])
def test_every_metric_follows_the_naming_rules(registry: CollectorRegistry) -> None:
    families = list(our_families(registry))
    assert len(families) >= 15
    for family in families:
        name = family.name
        assert name.startswith("multiraft_"), name
        assert name.split("_")[1] in SUBSYSTEMS, name
        assert re.fullmatch(r"[a-z][a-z0-9_]*[a-z0-9]", name) and "__" not in name, name
        assert not NON_BASE_UNITS.search(name), f"{name}: not a base unit"
        assert family.unit in ("", "seconds", "bytes"), name
        if family.unit:
            assert name.endswith("_" + family.unit), name
        if name.endswith(("_seconds", "_bytes")):
            assert family.unit == name.rsplit("_", 1)[1], f"{name}: built without unit="
        if "duration" in name:
            assert name.endswith("_seconds"), name
        if name.endswith("_size"):
            pytest.fail(f"{name}: a size needs the _bytes unit")
        sample_names = {s.name for s in family.samples}
        if family.type == "counter":
            # client_python strips _total from the family name and exposes <name>_total.
            assert not name.endswith("_total"), name
            assert sample_names <= {name + "_total", name + "_created"}, name
        else:
            assert not any(s.endswith("_total") for s in sample_names), f"{name}: not a counter"
        if family.type == "info":
            assert sample_names == {name + "_info"}, name
        for sample in family.samples:
            assert not FORBIDDEN_LABELS & set(sample.labels), f"{sample.name}: {sample.labels}"


@pytest.mark.parametrize("cls", METRIC_CLASSES, ids=lambda c: c.__name__)
def test_no_label_carries_a_region_or_peer_id(cls: Callable[[CollectorRegistry], object]) -> None:
    # Labelled metrics without children expose no samples, so read the declared names too.
    for metric in labelled_wrappers(cls(CollectorRegistry())):
        labelnames = set(metric._labelnames)  # client_python keeps the declared names here
        assert not labelnames & FORBIDDEN_LABELS, f"{metric._name}: {labelnames}"
        assert not any("region" in n or "peer" in n for n in labelnames), metric._name


def test_the_factory_refuses_rule_breaking_definitions() -> None:
    f = MetricFactory(CollectorRegistry(), "raft")
    with pytest.raises(ValueError, match="region/peer"):
        f.counter("messages", "x", ["region_id"])
    with pytest.raises(ValueError, match="region/peer"):
        f.gauge("lag", "x", ["peer"])
    with pytest.raises(ValueError, match="base unit"):
        f.histogram("latency", "x", unit="milliseconds", buckets=[1.0])
    with pytest.raises(ValueError, match="not in the name"):
        check_definition("apply_duration_seconds", [], "")
    with pytest.raises(ValueError, match="not in the name"):
        check_definition("rounds_total", [], "")


def test_nothing_lands_on_the_global_registry() -> None:
    # multiraft.metrics and every submodule were imported at the top of this file: inert.
    before = {f.name for f in prometheus_client.REGISTRY.collect()}
    for registry in process_registries():
        assert list(our_families(registry))
    after = {f.name for f in prometheus_client.REGISTRY.collect()}
    assert before == after
    assert not any(name.startswith("multiraft_") for name in after)


@pytest.mark.parametrize("cls", METRIC_CLASSES, ids=lambda c: c.__name__)
def test_each_class_registers_cleanly_into_fresh_registries(
    cls: Callable[[CollectorRegistry], object],
) -> None:
    first, second = CollectorRegistry(), CollectorRegistry()
    cls(first)
    cls(second)  # no DuplicateTimeseries: nothing is shared between registries
    assert exposed_names([first]) == exposed_names([second])
    with pytest.raises(DuplicateTimeseries):
        cls(first)  # but the same registry twice is a programming error, caught loudly


def test_instances_in_separate_registries_are_independent() -> None:
    a_reg, b_reg = CollectorRegistry(), CollectorRegistry()
    a, b = RaftMetrics(a_reg), RaftMetrics(b_reg)
    a.proposals.labels(result="dropped").inc(3)
    b.proposals.labels(result="dropped").inc()
    assert a_reg.get_sample_value("multiraft_raft_proposals_total", {"result": "dropped"}) == 3
    assert b_reg.get_sample_value("multiraft_raft_proposals_total", {"result": "dropped"}) == 1


def test_known_label_values_exist_at_zero() -> None:
    registry = CollectorRegistry()
    RaftMetrics(registry)
    KvMetrics(registry)
    assert registry.get_sample_value("multiraft_raft_proposals_total", {"result": "busy"}) == 0
    assert (
        registry.get_sample_value("multiraft_raft_messages_sent_total", {"type": "MsgHeartbeat"})
        == 0
    )
    assert (
        registry.get_sample_value("multiraft_kv_request_duration_seconds_count", {"op": "get"}) == 0
    )


def test_build_info() -> None:
    registry = CollectorRegistry()
    BuildInfo(registry, version="9.9.9")
    assert registry.get_sample_value("multiraft_build_info", {"version": "9.9.9"}) == 1


def test_forget_store_removes_per_store_series() -> None:
    registry = CollectorRegistry()
    placement = PlacementMetrics(registry)
    placement.set_store_balance(4, regions=10, leaders=3, region_score=10.5, leader_score=3.0)
    assert registry.get_sample_value("multiraft_placement_store_leaders", {"store": "4"}) == 3
    placement.forget_store(4)
    placement.forget_store(4)  # idempotent
    assert registry.get_sample_value("multiraft_placement_store_leaders", {"store": "4"}) is None
    transport = TransportMetrics(registry)
    transport.send_queue_length.labels(to_store="2").set(7)
    transport.forget_store(2)
    transport.forget_store(2)
    assert (
        registry.get_sample_value("multiraft_transport_send_queue_length", {"to_store": "2"})
        is None
    )


# -- RegionCollector ----------------------------------------------------------------------


def test_region_role_mapping() -> None:
    assert region_role(StateRole.Leader) == "leader"
    assert region_role(StateRole.Follower) == "follower"
    assert region_role(StateRole.Candidate) == "candidate"
    assert region_role(StateRole.PreCandidate) == "candidate"
    assert region_role(StateRole.Follower, is_learner=True) == "learner"


def test_region_collector_aggregates_at_scrape_time() -> None:
    regions = [
        RegionSummary("leader", approximate_size_bytes=10_000, approximate_keys=50),
        RegionSummary("leader", is_hibernating=True, approximate_size_bytes=16 * 1024),
        RegionSummary("follower", is_hibernating=True, approximate_keys=5_000),
        RegionSummary("follower", leader_missing=True, is_applying_snapshot=True),
        RegionSummary("follower", approximate_size_bytes=2 * 1024**3),
        RegionSummary("learner", is_applying_snapshot=True),
    ]
    registry = CollectorRegistry()
    registry.register(RegionCollector(lambda: iter(regions)))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("multiraft_store_regions", role="leader") == 2
    assert value("multiraft_store_regions", role="follower") == 3
    assert value("multiraft_store_regions", role="candidate") == 0  # present, at zero
    assert value("multiraft_store_regions", role="learner") == 1
    assert value("multiraft_store_hibernating_regions") == 2
    assert value("multiraft_store_leader_missing_regions") == 1
    assert value("multiraft_store_applying_snapshot_regions") == 2
    # Sizes: 10_000 and 16 KiB fall in the first bucket (le is inclusive), 2 GiB in +Inf only.
    assert value("multiraft_store_region_size_bytes_bucket", le=repr(16 * 1024.0)) == 2
    assert value("multiraft_store_region_size_bytes_bucket", le=repr(float(1024**3))) == 2
    assert value("multiraft_store_region_size_bytes_bucket", le="+Inf") == 3
    assert value("multiraft_store_region_size_bytes_count") == 3
    assert value("multiraft_store_region_size_bytes_sum") == 10_000 + 16 * 1024 + 2 * 1024**3
    assert value("multiraft_store_region_keys_bucket", le="100.0") == 1
    assert value("multiraft_store_region_keys_bucket", le="10000.0") == 2
    assert value("multiraft_store_region_keys_count") == 2
    assert value("multiraft_store_region_collect_errors_total") == 0

    # Nothing is cached between scrapes: the next scrape sees the new state.
    regions[:] = [RegionSummary("candidate")]
    assert value("multiraft_store_regions", role="leader") == 0
    assert value("multiraft_store_regions", role="candidate") == 1
    assert value("multiraft_store_region_size_bytes_count") == 0


def test_region_collector_calls_back_once_per_scrape_and_never_on_register() -> None:
    calls = 0

    def regions() -> list[RegionSummary]:
        nonlocal calls
        calls += 1
        return [RegionSummary("leader")]

    registry = CollectorRegistry()
    registry.register(RegionCollector(regions))
    assert calls == 0
    prometheus_client.generate_latest(registry)
    assert calls == 1
    with pytest.raises(DuplicateTimeseries):
        registry.register(RegionCollector(regions))  # describe() announces the names


def test_a_failing_region_callback_does_not_fail_the_scrape() -> None:
    def broken() -> list[RegionSummary]:
        raise RuntimeError("replica map changed size during iteration")

    registry = CollectorRegistry()
    KvMetrics(registry)
    registry.register(RegionCollector(broken))
    text = prometheus_client.generate_latest(registry).decode()
    assert "multiraft_kv_requests_total" in text  # the rest of the page survives
    assert "multiraft_store_regions{" not in text
    assert "multiraft_store_region_collect_errors_total 1.0" in text
    # Every failing scrape counts (get_sample_value scrapes once more).
    assert registry.get_sample_value("multiraft_store_region_collect_errors_total") == 2
    # An unknown role is a callback bug too.
    bad = CollectorRegistry()
    bad.register(RegionCollector(lambda: [RegionSummary("observer")]))  # type: ignore[arg-type]
    assert bad.get_sample_value("multiraft_store_region_collect_errors_total") == 1
    assert bad.get_sample_value("multiraft_store_region_collect_errors_total") == 2


def test_store_bundle_watches_regions_once() -> None:
    metrics = StoreServerMetrics(CollectorRegistry(), process_collectors=False)
    collector = metrics.watch_regions(_no_regions)
    assert metrics.regions is collector
    with pytest.raises(RuntimeError):
        metrics.watch_regions(_no_regions)


# -- docs and ops stay in sync with the code ----------------------------------------------


def _mentioned_metrics(text: str) -> set[str]:
    """Metric names in a text; wildcards (``multiraft_kv_*``) and the name pattern are skipped."""
    tokens = (t.rstrip("_") for t in re.findall(r"\bmultiraft_[a-z0-9_*]*", text))
    return {t for t in tokens if "*" not in t and t != "multiraft"}


def _resolve(name: str, known: dict[str, str]) -> str | None:
    """The exposed metric a mention refers to (``x_bucket`` -> histogram ``x``)."""
    if name in known:
        return name
    for suffix in ("_bucket", "_sum", "_count"):
        base = name.removesuffix(suffix)
        if base != name and known.get(base) == "histogram":
            return base
    return None


def test_docs_list_every_metric_and_only_real_ones() -> None:
    known = exposed_names(process_registries())
    doc = (REPO / "docs" / "metrics.md").read_text()
    # Catalogue rows: | `name` | type | labels | meaning | emitted by |
    row = re.compile(r"^\|\s*`(multiraft_[a-z0-9_]+)`\s*\|\s*(counter|gauge|histogram)", re.M)
    rows = {m.group(1): m.group(2) for m in row.finditer(doc)}
    assert set(rows) == set(known), (
        f"missing from docs/metrics.md: {sorted(set(known) - set(rows))}; "
        f"documented but not defined: {sorted(set(rows) - set(known))}"
    )
    for name, documented in rows.items():
        actual = "gauge" if known[name] == "info" else known[name]  # info renders as a gauge
        assert documented == actual, f"{name}: documented as {documented}, is {known[name]}"
    unknown = {n for n in _mentioned_metrics(doc) if _resolve(n, known) is None}
    assert not unknown, f"docs/metrics.md names metrics that do not exist: {sorted(unknown)}"


@pytest.mark.parametrize("path", ["ops/alerts.yml", "ops/prometheus.yml"])
def test_ops_files_name_only_real_metrics(path: str) -> None:
    known = exposed_names(process_registries())
    text = (REPO / path).read_text()
    unknown = {n for n in _mentioned_metrics(text) if _resolve(n, known) is None}
    assert not unknown, f"{path} names metrics that do not exist: {sorted(unknown)}"


# -- serve_metrics ------------------------------------------------------------------------


async def _start(
    nursery: trio.Nursery, registry: CollectorRegistry | None = None, **kw: Any
) -> tuple[int, CollectorRegistry]:
    if registry is None:
        registry = CollectorRegistry()
        StoreServerMetrics(registry, process_collectors=False)
    listeners = await nursery.start(partial(serve_metrics, **kw), registry, "127.0.0.1", 0)
    return listeners[0].socket.getsockname()[1], registry


async def _exchange(port: int, raw: bytes, *, half_close: bool = False) -> bytes:
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            if raw:
                await stream.send_all(raw)
            if half_close:
                await stream.send_eof()
            data = bytearray()
            while chunk := await stream.receive_some(65536):
                data += chunk
    return bytes(data)


def _parse(response: bytes) -> tuple[int, dict[str, str], bytes]:
    head, sep, body = response.partition(b"\r\n\r\n")
    assert sep, response
    status_line, *header_lines = head.decode("ascii").split("\r\n")
    version, status, _reason = status_line.split(" ", 2)
    assert version == "HTTP/1.1"
    headers = {}
    for line in header_lines:
        key, _, value = line.partition(":")
        headers[key.strip().lower()] = value.strip()
    assert int(headers["content-length"]) == len(body) or not body
    return int(status), headers, body


async def _get(
    port: int, target: str = "/metrics", method: str = "GET"
) -> tuple[int, dict[str, str], bytes]:
    request = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: */*\r\n\r\n"
    return _parse(await _exchange(port, request.encode()))


async def test_serves_the_exposition_format(nursery: trio.Nursery) -> None:
    port, _ = await _start(nursery)
    status, headers, body = await _get(port)
    assert status == 200
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    assert headers["connection"] == "close"
    families = {f.name: f for f in text_string_to_metric_families(body.decode())}
    assert "multiraft_raft_proposals" in families  # the parser strips _total from counters
    assert families["multiraft_build_info"].samples[0].value == 1  # info renders as a gauge
    assert b"_created" not in body  # left out by default: half the series, no reader


async def test_reflects_updates_and_ignores_the_query_string(nursery: trio.Nursery) -> None:
    registry = CollectorRegistry()
    metrics = StoreServerMetrics(registry, process_collectors=False)
    port, _ = await _start(nursery, registry)
    metrics.raft.proposals.labels(result="not_leader").inc(5)
    metrics.kv.request_duration.labels(op="put").observe(0.003)
    _, _, body = await _get(port, "/metrics?name[]=x")
    text = body.decode()
    assert 'multiraft_raft_proposals_total{result="not_leader"} 5.0' in text
    assert 'multiraft_kv_request_duration_seconds_bucket{le="0.005",op="put"} 1.0' in text


async def test_head_sends_headers_only(nursery: trio.Nursery) -> None:
    port, _ = await _start(nursery)
    _, get_headers, body = await _get(port)
    status, headers, head_body = await _get(port, method="HEAD")
    assert status == 200
    assert head_body == b""
    assert headers["content-length"] == get_headers["content-length"] == str(len(body))


@pytest.mark.parametrize(
    ("target", "method", "expected"),
    [
        ("/", "GET", 404),
        ("/metrics/", "GET", 404),
        ("/favicon.ico", "GET", 404),
        ("/metrics", "POST", 405),
        ("/metrics", "DELETE", 405),
    ],
)
async def test_other_paths_and_methods(
    nursery: trio.Nursery, target: str, method: str, expected: int
) -> None:
    port, _ = await _start(nursery)
    status, headers, _ = await _get(port, target, method)
    assert status == expected
    if expected == 405:
        assert headers["allow"] == "GET, HEAD"


GARBAGE = [
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", id="tls-hello"),
    pytest.param(b"\x00\x00\x00\x10\xa1\x63frame", id="raft-frame"),
    pytest.param(b"hello there\r\n\r\n", id="no-version"),
    pytest.param(b"GET /metrics HTTP/2.0\r\n\r\n", id="http2-line"),
    pytest.param(b"GET  /metrics HTTP/1.1\r\n\r\n", id="double-space"),
    pytest.param(b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n", id="bad-header"),
    pytest.param(b"GET /metrics HTTP/1.1\r\nHost: x\r\n", id="truncated"),
]


@pytest.mark.parametrize("garbage", GARBAGE)
async def test_garbage_gets_400_and_the_server_keeps_serving(
    nursery: trio.Nursery, garbage: bytes
) -> None:
    port, _ = await _start(nursery)
    status, _, _ = _parse(await _exchange(port, garbage, half_close=True))
    assert status == 400
    status, _, body = await _get(port)
    assert status == 200 and body


async def test_binary_garbage_is_refused_without_waiting(nursery: trio.Nursery) -> None:
    # No CRLF, connection left open: the server must not wait for the request timeout.
    port, _ = await _start(nursery, request_timeout=30.0)
    with trio.fail_after(2):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"\x16\x03\x01\x02\x00")
            data = await stream.receive_some(4096)
    assert data.startswith(b"HTTP/1.1 400 ")


async def test_oversized_request_gets_431(nursery: trio.Nursery) -> None:
    port, _ = await _start(nursery, max_request_bytes=1024)
    request = b"GET /metrics HTTP/1.1\r\nX-Padding: " + b"a" * 4096 + b"\r\n\r\n"
    status, _, _ = _parse(await _exchange(port, request))
    assert status == 431
    assert (await _get(port))[0] == 200


async def test_slow_request_gets_408(nursery: trio.Nursery) -> None:
    port, _ = await _start(nursery, request_timeout=0.2)
    with trio.fail_after(5):
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        async with stream:
            await stream.send_all(b"GET /metrics HTTP/1.1\r\n")  # and then nothing
            data = await stream.receive_some(4096)
    assert data.startswith(b"HTTP/1.1 408 ")
    assert (await _get(port))[0] == 200


async def test_connection_limit_answers_503(nursery: trio.Nursery) -> None:
    port, _ = await _start(nursery, max_connections=0)
    assert (await _get(port))[0] == 503


async def test_silent_and_reset_connections_do_not_hurt(nursery: trio.Nursery) -> None:
    port, _ = await _start(nursery)
    assert await _exchange(port, b"", half_close=True) == b""  # a port probe: no answer
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    await stream.send_all(b"GET /met")
    await trio.aclose_forcefully(stream)  # gone mid-request
    assert (await _get(port))[0] == 200


async def test_a_failing_collector_gives_500_not_a_dead_server(nursery: trio.Nursery) -> None:
    class Broken:
        def collect(self) -> list[Metric]:
            raise RuntimeError("boom")

    registry = CollectorRegistry()
    registry.register(Broken())
    port, _ = await _start(nursery, registry)
    assert (await _get(port))[0] == 500
    assert (await _get(port))[0] == 500  # still answering
