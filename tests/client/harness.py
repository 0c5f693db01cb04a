"""A client wired to an in-memory :class:`~tests.client.fakes.FakeCluster`."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from multiraft.client import Client
from tests.client.fakes import FakeCluster, FakeNetwork, FakePlacement


@dataclass
class Harness:
    cluster: FakeCluster = field(default_factory=FakeCluster)

    def __post_init__(self) -> None:
        self.placement = FakePlacement(self.cluster)
        self.network = FakeNetwork(self.cluster)

    def client(self, **options: Any) -> Client:
        """A client of the fake cluster (enter it with ``async with``); seeded jitter."""
        options.setdefault("rng", random.Random(1234))
        return Client(
            "fake-placement:1",
            placement=self.placement,
            connect_store=self.network.connect,
            **options,
        )
