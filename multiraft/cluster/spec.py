"""The cluster file: what ``multiraft cluster up`` started and where, in ``<data-dir>/cluster.json``.

Layout of a local cluster's data directory::

    <data-dir>/cluster.json        this file (written atomically)
    <data-dir>/cluster.lock        held while a ``cluster`` command changes the cluster
    <data-dir>/placement/          the placement service's data
    <data-dir>/placement.toml      its config (see ``placement_settings``)
    <data-dir>/store1/ ...         each store's data
    <data-dir>/logs/<name>.log     each process's stdout and stderr, appended

The file is a JSON object. Client-side commands read only ``placement`` (see
``multiraft/cli/common.py``); the rest is for ``cluster up|status|down`` and for people::

    {
      "format": 1,
      "cluster_id": "0x5083fb6e7a11748b",     // null until the placement service answered
      "host": "127.0.0.1",
      "placement": "127.0.0.1:41001",         // what clients connect to
      "placement_metrics": "127.0.0.1:41002",
      "processes": [
        {"name": "placement", "role": "placement", "address": "127.0.0.1:41001",
         "metrics_address": "127.0.0.1:41002", "data_dir": "placement",
         "log": "logs/placement.log", "pid": 12345, "store_id": null},
        {"name": "store1", "role": "store", "address": "127.0.0.1:41003", ...,
         "store_id": 1},
        ...
      ]
    }

Paths inside are relative to the data directory, so the directory can be moved while the
cluster is down. ``pid`` is null for a process that is not running (``cluster down``
clears it). ``store_id`` is the id the placement service gave the store (null until
known).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

__all__ = [
    "CLUSTER_FILE",
    "FORMAT",
    "ClusterFileError",
    "ClusterSpec",
    "ProcessSpec",
    "Role",
]

CLUSTER_FILE: Final = "cluster.json"
FORMAT: Final = 1

Role = Literal["placement", "store"]


class ClusterFileError(Exception):
    """The cluster file cannot be read or is not one this version understands."""


@dataclass
class ProcessSpec:
    """One process of the cluster: its endpoints, its files, its pid when running."""

    name: str
    role: Role
    address: str
    metrics_address: str
    #: Relative to the cluster's data directory.
    data_dir: str
    #: Relative to the cluster's data directory.
    log: str
    pid: int | None = None
    store_id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "address": self.address,
            "metrics_address": self.metrics_address,
            "data_dir": self.data_dir,
            "log": self.log,
            "pid": self.pid,
            "store_id": self.store_id,
        }

    @classmethod
    def from_json(cls, d: object) -> ProcessSpec:
        if not isinstance(d, dict):
            raise ClusterFileError("a process entry is not an object")
        try:
            name, role = d["name"], d["role"]
            address, metrics = d["address"], d.get("metrics_address", "")
            data_dir, log = d["data_dir"], d["log"]
        except KeyError as e:
            raise ClusterFileError(f"a process entry lacks {e.args[0]!r}") from None
        for what, v in (("name", name), ("address", address), ("metrics_address", metrics),
                        ("data_dir", data_dir), ("log", log)):  # fmt: skip
            if not isinstance(v, str):
                raise ClusterFileError(f"process {what} must be a string, got {v!r}")
        if role not in ("placement", "store"):
            raise ClusterFileError(f"unknown process role {role!r}")
        pid, store_id = d.get("pid"), d.get("store_id")
        for what, v in (("pid", pid), ("store_id", store_id)):
            if v is not None and (type(v) is not int or v <= 0):
                raise ClusterFileError(f"process {what} must be a positive integer or null")
        return cls(name, role, address, metrics, data_dir, log, pid, store_id)


@dataclass
class ClusterSpec:
    """A local cluster as recorded in its data directory (see the module docstring)."""

    #: The cluster's data directory (absolute); not stored in the file.
    root: Path
    host: str
    processes: list[ProcessSpec] = field(default_factory=list)
    cluster_id: int | None = None

    @property
    def path(self) -> Path:
        return self.root / CLUSTER_FILE

    @property
    def placement(self) -> ProcessSpec:
        for p in self.processes:
            if p.role == "placement":
                return p
        raise ClusterFileError(f"{self.path} names no placement service")

    @property
    def stores(self) -> list[ProcessSpec]:
        return [p for p in self.processes if p.role == "store"]

    def data_path(self, p: ProcessSpec) -> Path:
        """The absolute data directory of ``p`` (also how its pid is recognised)."""
        return self.root / p.data_dir

    def log_path(self, p: ProcessSpec) -> Path:
        return self.root / p.log

    def to_json(self) -> dict[str, Any]:
        placement = self.placement
        return {
            "format": FORMAT,
            "cluster_id": None if self.cluster_id is None else f"{self.cluster_id:#x}",
            "host": self.host,
            "placement": placement.address,
            "placement_metrics": placement.metrics_address,
            "processes": [p.to_json() for p in self.processes],
        }

    @classmethod
    def from_json(cls, root: Path, d: object) -> ClusterSpec:
        """Raises ClusterFileError."""
        if not isinstance(d, dict):
            raise ClusterFileError("not a JSON object")
        if d.get("format") != FORMAT:
            raise ClusterFileError(
                f"format {d.get('format')!r} is not {FORMAT}: written by another version, or "
                "not by `multiraft cluster up`"
            )
        host = d.get("host")
        if not isinstance(host, str):
            raise ClusterFileError("'host' must be a string")
        raw_id = d.get("cluster_id")
        cluster_id: int | None = None
        if raw_id is not None:
            try:
                cluster_id = int(raw_id, 16) if isinstance(raw_id, str) else None
            except ValueError:
                cluster_id = None
            if cluster_id is None:
                raise ClusterFileError(f"bad cluster_id {raw_id!r}")
        procs = d.get("processes")
        if not isinstance(procs, list):
            raise ClusterFileError("'processes' must be a list")
        spec = cls(root, host, [ProcessSpec.from_json(p) for p in procs], cluster_id)
        names = [p.name for p in spec.processes]
        if len(set(names)) != len(names):
            raise ClusterFileError("two processes share a name")
        if sum(p.role == "placement" for p in spec.processes) != 1:
            raise ClusterFileError("there must be exactly one placement service")
        return spec

    @classmethod
    def load(cls, root: Path) -> ClusterSpec | None:
        """The cluster recorded in ``root``, or None if there is no cluster file.

        Raises:
            ClusterFileError: the file exists but cannot be read or understood.
        """
        root = root.resolve()
        path = root / CLUSTER_FILE
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as e:
            raise ClusterFileError(f"cannot read {path}: {e.strerror or e}") from None
        try:
            data = json.loads(text)
        except ValueError as e:
            raise ClusterFileError(f"{path} is not valid JSON: {e}") from None
        try:
            return cls.from_json(root, data)
        except ClusterFileError as e:
            raise ClusterFileError(f"{path}: {e}") from None

    def save(self) -> Path:
        """Write the file atomically (a temporary file renamed over it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(self.to_json(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)
        return self.path
