"""Metrics of a process's LMDB environment: the round's write transaction, fsync, size.

Subsystem ``storage``; emitted by ``multiraft.storage`` (the store's engine and write batch,
and the placement service's metadata store). One write transaction per ready round
(ARCHITECTURE.md section 3) means these histograms observe once per round, not per region.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from multiraft.metrics._common import (
    BATCH_SIZE_BUCKETS,
    COUNT_BUCKETS,
    ROUND_DURATION_BUCKETS,
    MetricFactory,
)


class StorageMetrics:
    """The ``multiraft_storage_*`` metrics of one process.

    Args:
        registry: the process's registry (tests: a fresh ``CollectorRegistry()``).

    The two size gauges suit ``Gauge.set_function``: the engine can bind them once to a cheap
    ``env.info()``/``env.stat()`` reader and they are read at scrape time, on the trio thread.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        f = MetricFactory(registry, "storage")

        #: Begin-to-commit time of one write transaction (the whole round's writes + fsync).
        self.write_txn_duration = f.histogram(
            "write_txn_duration",
            "Time of one LMDB write transaction, from begin to durable commit.",
            unit="seconds",
            buckets=ROUND_DURATION_BUCKETS,
        )
        #: Time of the durable flush alone (commit with sync, or env.sync()).
        self.fsync_duration = f.histogram(
            "fsync_duration",
            "Time to make a write transaction durable (fsync).",
            unit="seconds",
            buckets=ROUND_DURATION_BUCKETS,
        )
        #: Bytes (keys + values) written by one write batch.
        self.write_batch_bytes = f.histogram(
            "write_batch_size",
            "Bytes of keys and values written by one write batch.",
            unit="bytes",
            buckets=BATCH_SIZE_BUCKETS,
        )
        #: Key writes and deletes in one write batch.
        self.write_batch_entries = f.histogram(
            "write_batch_entries",
            "Key puts and deletes in one write batch.",
            buckets=COUNT_BUCKETS,
        )
        #: Bytes written in total (the running sum of write_batch_bytes, as a plain counter
        #: for throughput panels).
        self.written_bytes = f.counter(
            "written", "Bytes of keys and values written to LMDB.", unit="bytes"
        )
        #: LMDB map size: the ceiling the environment may grow to.
        self.map_size_bytes = f.gauge(
            "map_size", "Configured LMDB map size (the most the data file may use).", unit="bytes"
        )
        #: Bytes of the map in use (last page number times page size).
        self.used_bytes = f.gauge(
            "used", "Bytes of the LMDB map in use (pages used times page size).", unit="bytes"
        )

        # -- range cleanup (store only; issue 5) -------------------------------------------
        #: Data keys deleted because no replica on this store owns them any more.
        self.range_cleaned_keys = f.counter(
            "range_cleaned_keys",
            "Data keys deleted by range cleanup (ranges of destroyed or moved-away replicas).",
        )
        #: Bytes (keys + values) of those keys.
        self.range_cleaned_bytes = f.counter(
            "range_cleaned",
            "Bytes of keys and values deleted by range cleanup.",
            unit="bytes",
        )
