"""Process configuration: the dataclasses behind ``--config file.toml`` and the CLI flags.

Each long-lived process has one config dataclass here (:class:`PlacementConfig`, and the
store's config). A TOML file is read with :func:`load_toml` and turned into a config with the
class's ``from_mapping``; CLI flags then override single fields (``dataclasses.replace``).
Validation happens once, in ``validate()``, and raises :class:`ConfigError` with a message
meant for a user (one line, naming the setting).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "PlacementConfig",
    "StoreConfig",
    "format_address",
    "load_toml",
    "parse_address",
]


class ConfigError(ValueError):
    """A configuration value (file or flag) is unusable; the message names it."""


def load_toml(path: str | Path) -> dict[str, Any]:
    """The parsed TOML file at ``path``.

    Raises:
        ConfigError: the file cannot be read or is not valid TOML.
    """
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {p}: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {p} is not valid TOML: {e}") from None


def parse_address(text: str, *, what: str = "address") -> tuple[str, int]:
    """``"host:port"`` (IPv6 as ``"[::1]:port"``) as ``(host, port)``; port 0 is allowed
    (the OS chooses).

    Raises:
        ConfigError: not ``host:port``, an empty host, or a port outside 0..65535.
    """
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text:
        raise ConfigError(f"bad {what} {text!r}: expected host:port, e.g. 127.0.0.1:2379")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ConfigError(f"bad {what} {text!r}: {host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ConfigError(f"bad {what} {text!r}: write an IPv6 host in brackets, e.g. [::1]:2379")
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ConfigError(f"bad {what} {text!r}: the port must be a number in 0..65535")
    if any(ch.isspace() for ch in host):
        raise ConfigError(f"bad {what} {text!r}: the host contains whitespace")
    return host, int(port_text)


def format_address(host: str, port: int) -> str:
    """The inverse of :func:`parse_address`."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _is_wildcard(host: str) -> bool:
    return host in ("0.0.0.0", "::", "")


def _fields_from(cls: type[Any], data: Mapping[str, Any], section: str) -> dict[str, Any]:
    """``data``'s keys (TOML spells them with ``-`` or ``_``), checked against ``cls``'s fields."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = key.replace("-", "_")
        if name not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(f"unknown setting {key!r} in [{section}] (known: {known})")
        out[name] = value
    return out


@dataclass(frozen=True, slots=True)
class PlacementConfig:
    """The placement service's settings (``multiraft placement start``).

    ``advertise`` is the address stores and clients are told to use (empty: ``listen``,
    which then must not be a wildcard address); ``metrics_listen`` serves ``/metrics``
    (empty: no metrics listener).
    """

    listen: str = "127.0.0.1:2379"
    advertise: str = ""
    data_dir: Path = Path("multiraft-data/placement")
    metrics_listen: str = "127.0.0.1:9379"
    #: Replicas of the first region; the cluster bootstraps once this many stores joined.
    bootstrap_replicas: int = 3
    #: Whether the scheduling loop creates operators by itself: replaces missing and down
    #: replicas, balances regions and leaders (manual operators and drains work either way).
    schedule_enabled: bool = True
    #: Seconds between two scheduling passes.
    schedule_interval: float = 1.0
    #: Most running operators that put work on one store.
    schedule_store_limit: int = 2
    #: A store silent this long has its replicas replaced (PD: 30 min).
    max_store_down_seconds: float = 30 * 60.0
    #: Seconds an operator gets per step, and per step that waits for a snapshot (adding
    #: a learner); an operator's timeout is the sum over its steps (PD: 60 s and 10 min).
    operator_step_seconds: float = 60.0
    operator_snapshot_step_seconds: float = 600.0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PlacementConfig:
        """From a parsed TOML document: its ``[placement]`` table if it has one, else its
        top level.

        Raises:
            ConfigError: an unknown key or a value of the wrong type.
        """
        table = data.get("placement", data)
        if not isinstance(table, Mapping):
            raise ConfigError("[placement] must be a table")
        kw = _fields_from(cls, table, "placement")
        for name in ("listen", "advertise", "metrics_listen"):
            if name in kw and not isinstance(kw[name], str):
                raise ConfigError(f'placement {name} must be a string like "127.0.0.1:2379"')
        if "data_dir" in kw:
            if not isinstance(kw["data_dir"], str):
                raise ConfigError("placement data_dir must be a string (a path)")
            kw["data_dir"] = Path(kw["data_dir"])
        br = kw.get("bootstrap_replicas", 3)
        if type(br) is not int:
            raise ConfigError("placement bootstrap_replicas must be an integer")
        if type(kw.get("schedule_enabled", False)) is not bool:
            raise ConfigError("placement schedule_enabled must be true or false")
        if type(kw.get("schedule_store_limit", 2)) is not int:
            raise ConfigError("placement schedule_store_limit must be an integer")
        for name in ("schedule_interval", "max_store_down_seconds", "operator_step_seconds",
                     "operator_snapshot_step_seconds"):  # fmt: skip
            if name in kw:
                if type(kw[name]) not in (int, float):
                    raise ConfigError(f"placement {name} must be a number of seconds")
                kw[name] = float(kw[name])
        return cls(**kw).validate()

    @classmethod
    def load(cls, path: str | Path) -> PlacementConfig:
        """Read a TOML config file (see :meth:`from_mapping`)."""
        return cls.from_mapping(load_toml(path))

    def validate(self) -> PlacementConfig:
        """Check every field; return ``self``.

        Raises:
            ConfigError: naming the first bad setting.
        """
        host, _ = parse_address(self.listen, what="listen address")
        if self.advertise:
            ahost, aport = parse_address(self.advertise, what="advertise address")
            if _is_wildcard(ahost) or aport == 0:
                raise ConfigError(
                    f"bad advertise address {self.advertise!r}: give a routable host and port"
                )
        elif _is_wildcard(host):
            raise ConfigError(
                f"listening on {self.listen} needs an advertise address (--advertise host:port)"
            )
        if self.metrics_listen:
            parse_address(self.metrics_listen, what="metrics listen address")
        if not 1 <= self.bootstrap_replicas <= 7:
            raise ConfigError(
                f"bootstrap_replicas must be between 1 and 7, got {self.bootstrap_replicas}"
            )
        if not self.schedule_interval > 0 or not self.max_store_down_seconds > 0:
            raise ConfigError("schedule_interval and max_store_down_seconds must be positive")
        if self.schedule_store_limit < 1:
            raise ConfigError("schedule_store_limit must be at least 1")
        if not self.operator_step_seconds > 0 or not self.operator_snapshot_step_seconds > 0:
            raise ConfigError(
                "operator_step_seconds and operator_snapshot_step_seconds must be positive"
            )
        return self

    def advertise_address(self, bound_port: int) -> str:
        """The address to tell others: ``advertise``, else ``listen`` with the bound port
        (so that ``listen = "127.0.0.1:0"`` advertises the port the OS chose)."""
        if self.advertise:
            return self.advertise
        host, _ = parse_address(self.listen)
        return format_address(host, bound_port)


_TYPE_WORDS: dict[tuple[type, ...], str] = {
    (str,): "a string",
    (int,): "an integer",
    (int, float): "a number",
    (bool,): "true or false",
}


def _check_types(
    kw: Mapping[str, Any], section: str, types: Mapping[str, tuple[type, ...]]
) -> None:
    """Each present key of ``kw`` has one of its allowed types (a bool is not an int)."""
    for name, allowed in types.items():
        if name not in kw:
            continue
        v = kw[name]
        ok = isinstance(v, allowed) and not (isinstance(v, bool) and bool not in allowed)
        if not ok:
            words = _TYPE_WORDS.get(allowed, " or ".join(t.__name__ for t in allowed))
            raise ConfigError(f"{section} {name} must be {words}, got {v!r}")


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """A store process's settings (``multiraft server start``).

    ``store_listen`` serves raft, snapshot, KV and admin traffic; ``advertise`` is the
    address other stores and clients are told (empty: ``store_listen`` with the bound
    port, which then must not be a wildcard); ``placement`` is the placement service;
    ``metrics_listen`` serves ``/metrics`` (empty: none).

    Raft timing: the store ticks every ``raft_tick_interval`` seconds; a follower
    campaigns after ``election_tick`` ticks without a leader (randomised up to twice
    that), a leader heartbeats every ``heartbeat_tick`` ticks.
    """

    store_listen: str = "127.0.0.1:20160"
    advertise: str = ""
    placement: str = "127.0.0.1:2379"
    data_dir: Path = Path("multiraft-data/store")
    metrics_listen: str = "127.0.0.1:20180"
    raft_tick_interval: float = 0.1
    election_tick: int = 10
    heartbeat_tick: int = 2
    #: Byte budget of one MsgAppend's entries.
    max_size_per_msg: int = 1 << 20
    #: Appends in flight to one follower.
    max_inflight_msgs: int = 256
    #: Serve ``Lease`` reads from the leader lease (else they go through ReadIndex).
    lease_reads: bool = True
    #: Client requests waiting for the ready loop; more are answered ServerIsBusy.
    max_pending_requests: int = 65536
    #: Raft envelopes waiting for the ready loop; more are dropped (Raft retries).
    max_pending_messages: int = 262144
    #: Seconds a client request may wait for its answer before Timeout.
    request_timeout: float = 10.0
    #: Seconds between a leader's region heartbeats (also sent at once on leader change).
    region_heartbeat_interval: float = 5.0
    #: Seconds between store heartbeats (PD uses 10 s; ours also tell a store which of its
    #: regions have a new operator, so a short interval makes manual operations start fast).
    store_heartbeat_interval: float = 1.0
    #: Seconds a placement call may take.
    placement_timeout: float = 5.0
    max_frame_size: int = 16 * 1024 * 1024
    #: Largest snapshot a store accepts, in bytes.
    max_snapshot_bytes: int = 1 << 30
    #: Snapshots sent at once.
    max_sending_snapshots: int = 4
    #: Snapshot streams received at once; more are answered Busy (TiKV concurrent-recv-snap-limit).
    max_receiving_snapshots: int = 4
    #: Target size of a region's pieces when it splits; a region is checked from 1.5x this
    #: size (or the derived key counts: ``regions.split.SplitPolicy.from_split_size``).
    #: TiKV: 96 MiB (256 MiB since 2024). ``multiraft cluster up`` uses 1 MiB so a demo splits.
    region_split_size: int = 96 * 1024 * 1024
    #: Seconds between the leaders' split checks (TiKV 10 s).
    split_check_interval: float = 10.0
    #: Test only: honour InjectFaults admin requests.
    fault_injection: bool = False
    #: fsync every round's commit (turn off only for benchmarks of everything else).
    sync: bool = True

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> StoreConfig:
        """From a parsed TOML document: its ``[store]`` table if it has one, else its top level.

        Raises:
            ConfigError: an unknown key or a value of the wrong type.
        """
        table = data.get("store", data)
        if not isinstance(table, Mapping):
            raise ConfigError("[store] must be a table")
        kw = _fields_from(cls, table, "store")
        strs = ("store_listen", "advertise", "placement", "metrics_listen", "data_dir")
        ints = ("election_tick", "heartbeat_tick", "max_size_per_msg", "max_inflight_msgs",
                "max_pending_requests", "max_pending_messages", "max_frame_size",
                "max_snapshot_bytes", "max_sending_snapshots",
                "max_receiving_snapshots", "region_split_size")  # fmt: skip
        floats = ("raft_tick_interval", "request_timeout", "region_heartbeat_interval",
                  "store_heartbeat_interval", "placement_timeout",
                  "split_check_interval")  # fmt: skip
        types: dict[str, tuple[type, ...]] = {n: (str,) for n in strs}
        types.update({n: (int,) for n in ints})
        types.update({n: (int, float) for n in floats})
        types.update({n: (bool,) for n in ("lease_reads", "fault_injection", "sync")})
        _check_types(kw, "store", types)
        if "data_dir" in kw:
            kw["data_dir"] = Path(kw["data_dir"])
        for n in floats:
            if n in kw:
                kw[n] = float(kw[n])
        return cls(**kw).validate()

    @classmethod
    def load(cls, path: str | Path) -> StoreConfig:
        """Read a TOML config file (see :meth:`from_mapping`)."""
        return cls.from_mapping(load_toml(path))

    def validate(self) -> StoreConfig:
        """Check every field; return ``self``.

        Raises:
            ConfigError: naming the first bad setting.
        """
        host, _ = parse_address(self.store_listen, what="store listen address")
        if self.advertise:
            ahost, aport = parse_address(self.advertise, what="advertise address")
            if _is_wildcard(ahost) or aport == 0:
                raise ConfigError(
                    f"bad advertise address {self.advertise!r}: give a routable host and port"
                )
        elif _is_wildcard(host):
            raise ConfigError(
                f"listening on {self.store_listen} needs an advertise address (--advertise host:port)"
            )
        parse_address(self.placement, what="placement address")
        if self.metrics_listen:
            parse_address(self.metrics_listen, what="metrics listen address")
        if not 0 < self.raft_tick_interval <= 10:
            raise ConfigError(
                f"raft_tick_interval must be in (0, 10] seconds, got {self.raft_tick_interval}"
            )
        if not 0 < self.heartbeat_tick < self.election_tick:
            raise ConfigError(
                f"need 0 < heartbeat_tick < election_tick, got {self.heartbeat_tick} and {self.election_tick}"
            )
        for name in ("max_size_per_msg", "max_inflight_msgs", "max_pending_requests",
                     "max_pending_messages", "max_frame_size", "max_snapshot_bytes",
                     "max_sending_snapshots", "max_receiving_snapshots",
                     "region_split_size"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("request_timeout", "region_heartbeat_interval", "store_heartbeat_interval",
                     "placement_timeout", "split_check_interval"):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be a positive number of seconds")
        return self

    def advertise_address(self, bound_port: int) -> str:
        """The address to tell others: ``advertise``, else ``store_listen`` with the bound port."""
        if self.advertise:
            return self.advertise
        host, _ = parse_address(self.store_listen)
        return format_address(host, bound_port)

    def election_timeout_seconds(self) -> float:
        """The shortest time a follower waits before campaigning."""
        return self.election_tick * self.raft_tick_interval
