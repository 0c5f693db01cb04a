"""The local cluster's placement settings: ``<data-dir>/placement.toml``.

``multiraft cluster up`` writes this file every time, before it starts the placement
service (which reads it with ``--config``):

* ``bootstrap_replicas`` is min(3, stores), recomputed each time (adding stores to a
  one-store cluster raises it, and the replica checker then adds the missing replicas);
* the settings given as ``cluster up`` options (``--schedule/--no-schedule``,
  ``--max-store-down-seconds``) replace the file's;
* every other setting already in the file is kept, so hand edits survive an ``up``;
* a setting of :data:`LOCAL_DEFAULTS` missing from the file is added: a local demo
  wants a store that is killed to have its replicas replaced within half a minute, and
  operators that fail to end in seconds, not PD's 30 minutes and 10 minutes.

``schedule_enabled`` is not among the defaults: it stays the service's default unless
``--schedule`` is given (or the file sets it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from multiraft.settings import ConfigError, PlacementConfig, load_toml

__all__ = ["BOOTSTRAP_REPLICAS", "LOCAL_DEFAULTS", "placement_settings", "write_placement_config"]

#: Replicas of the first region (fewer when the cluster has fewer stores).
BOOTSTRAP_REPLICAS: Final = 3

#: What a new local cluster's placement service runs with (besides the service defaults).
#: The store heartbeats every 10 s, so 30 s of silence is three missed heartbeats.
LOCAL_DEFAULTS: Final[Mapping[str, float]] = {
    "max_store_down_seconds": 30.0,
    "operator_step_seconds": 30.0,
    "operator_snapshot_step_seconds": 300.0,
}


def placement_settings(
    path: Path, stores: int, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The ``[placement]`` table to write to ``path`` (see the module docstring).

    Raises:
        ConfigError: the existing file is unreadable or not valid, or the result is not a
            valid placement config (the message names the file).
    """
    table: dict[str, Any] = {}
    if path.exists():
        data = load_toml(path)
        raw = data.get("placement", data)
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{path}: [placement] must be a table")
        table = {str(k).replace("-", "_"): v for k, v in raw.items()}
    for key, value in LOCAL_DEFAULTS.items():
        table.setdefault(key, value)
    table.update({k: v for k, v in (overrides or {}).items() if v is not None})
    table["bootstrap_replicas"] = max(1, min(BOOTSTRAP_REPLICAS, stores))
    try:
        PlacementConfig.from_mapping({"placement": table})
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return table


def _toml_value(key: str, v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float) and math.isfinite(v):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a TOML basic string is a JSON string
    raise ConfigError(f"placement setting {key} = {v!r} cannot be written back")


def write_placement_config(
    root: Path, stores: int, overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Write ``root/placement.toml`` for a cluster of ``stores`` stores; the settings written.

    Raises:
        ConfigError: see :func:`placement_settings`.
    """
    path = root / "placement.toml"
    table = placement_settings(path, stores, overrides)
    lines = ["# Written by `multiraft cluster up`; edits to other settings are kept.",
             "[placement]"]  # fmt: skip
    lines += [f"{k} = {_toml_value(k, v)}" for k, v in sorted(table.items())]
    tmp = path.with_suffix(".toml.tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.replace(path)
    return table
