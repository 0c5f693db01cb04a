"""The sans-IO layers import nothing that does I/O and nothing of ours above them.

ARCHITECTURE.md §1: ``multiraft.raft`` and ``regions`` take time as ``tick()``,
randomness as an injected ``Rng`` and logging as an injected ``Logger``, so they
never import trio, lmdb, cbor2, socket, threading, time, random, asyncio or
prometheus_client (nor the low-level twins listed in ``FORBIDDEN``). Of our own
packages, ``multiraft.raft`` imports only itself, and ``regions`` only itself and
``multiraft.raft``. ``multiraft/__init__.py`` is held to the core's rule, because
every ``import multiraft.raft`` runs it first.

The check reads the source (``ast``), so it sees imports in functions and under
``if TYPE_CHECKING:`` too, resolves relative imports, and reads the string given
to ``importlib.import_module``/``__import__``; a dynamic import it cannot
resolve is itself a violation.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

#: Top-level modules the sans-IO layers must never import, with their submodules.
FORBIDDEN = frozenset(
    {
        "trio",
        "lmdb",
        "cbor2",
        "socket",
        "threading",
        "time",
        "random",
        "asyncio",
        "prometheus_client",
        # Low-level twins of the above: threads, processes, sockets, entropy.
        "_thread",
        "concurrent",
        "multiprocessing",
        "subprocess",
        "selectors",
        "ssl",
        "secrets",
    }
)
#: Our own top-level packages.
OURS = frozenset({"multiraft", "regions", "tests"})
#: For each sans-IO layer, the packages of ours it may import.
ALLOWED_OURS = {
    "multiraft.raft": ("multiraft.raft",),
    "regions": ("regions", "multiraft.raft"),
}
_DYNAMIC_IMPORTERS = frozenset({"import_module", "__import__"})


@dataclass(frozen=True)
class Violation:
    path: str
    line: int
    module: str | None  # None: an import the checker could not resolve
    why: str

    def __str__(self) -> str:
        what = "an unresolvable import" if self.module is None else repr(self.module)
        return f"{self.path}:{self.line}: imports {what}: {self.why}"


def _resolve(name: str, level: int, package: str) -> str | None:
    """The absolute module of a ``level``-dot relative import, or None above the top."""
    if level == 0:
        return name
    parts = package.split(".") if package else []
    if level - 1 >= len(parts):
        return None
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{name}" if name else base


def _dynamic_target(call: ast.Call, package: str) -> str | None:
    arg = call.args[0] if call.args else None
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        return None
    name = arg.value
    level = len(name) - len(name.lstrip("."))
    given = [kw.value for kw in call.keywords if kw.arg == "package"] + call.args[1:2]
    if given and level:  # import_module(name, package)
        if not (isinstance(given[0], ast.Constant) and isinstance(given[0].value, str)):
            return None
        package = given[0].value
    return _resolve(name[level:], level, package)


def imported_modules(tree: ast.AST, package: str) -> Iterator[tuple[int, str | None]]:
    """Every (line, absolute module) that ``tree`` imports; None when unresolvable.

    ``from pkg import name`` counts as importing ``pkg``, except when ``pkg`` is one
    of our top-level packages: then it counts as ``pkg.name`` (``from multiraft
    import raft`` imports ``multiraft.raft``).
    """
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module or "", node.level, package)
            if base in OURS:
                for alias in node.names:
                    yield node.lineno, f"{base}.{alias.name}"
            else:
                yield node.lineno, base
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in _DYNAMIC_IMPORTERS:
                yield node.lineno, _dynamic_target(node, package)


def _why_forbidden(module: str | None, layer: str) -> str | None:
    if module is None:
        return "the checker cannot tell what it is (dynamic, or above the top-level package)"
    top = module.split(".")[0]
    if top in FORBIDDEN:
        return f"{layer} is sans-IO: no I/O, clocks, threads or randomness"
    allowed = ALLOWED_OURS[layer]
    if top in OURS and not any(module == a or module.startswith(a + ".") for a in allowed):
        return f"{layer} may import only {' and '.join(allowed)} of ours"
    return None


def check_source(source: str, path: str, module: str, layer: str) -> list[Violation]:
    """The forbidden imports of one file.

    Args:
        source: the file's text.
        path: shown in each violation.
        module: the file's dotted module name; a package's ``__init__`` is the package.
        layer: a key of ``ALLOWED_OURS``, whose rule applies.
    """
    is_package = path.endswith("__init__.py")
    package = module if is_package else module.rpartition(".")[0]
    out = []
    for line, imported in imported_modules(ast.parse(source, path), package):
        why = _why_forbidden(imported, layer)
        if why is not None:
            out.append(Violation(path, line, imported, why))
    return out


def sans_io_files() -> list[tuple[Path, str, str]]:
    """(path, module, layer) of every file the rule covers."""
    files = [(REPO / "multiraft" / "__init__.py", "multiraft", "multiraft.raft")]
    for layer in ALLOWED_OURS:
        root = REPO.joinpath(*layer.split("."))
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            files.append((path, module, layer))
    return files


def test_sans_io_layers_import_only_what_they_may() -> None:
    violations = []
    for path, module, layer in sans_io_files():
        rel = str(path.relative_to(REPO))
        violations += check_source(path.read_text(encoding="utf-8"), rel, module, layer)
    assert not violations, "forbidden imports:\n" + "\n".join(map(str, violations))


def test_the_walk_covers_both_layers() -> None:
    modules = {module for _, module, _ in sans_io_files()}
    assert {"multiraft", "multiraft.raft", "multiraft.raft.types", "regions"} <= modules


@pytest.mark.parametrize(
    ("source", "path", "module", "line", "culprit"),
    [
        ("import time\n", "multiraft/raft/x.py", "multiraft.raft.x", 1, "time"),
        ("import os, random as r\n", "multiraft/raft/x.py", "multiraft.raft.x", 1, "random"),
        ("\nimport trio.lowlevel\n", "regions/x.py", "regions.x", 2, "trio.lowlevel"),
        ("from threading import Lock\n", "regions/x.py", "regions.x", 1, "threading"),
        (
            "def f():\n    from lmdb import open\n",
            "multiraft/raft/x.py",
            "multiraft.raft.x",
            2,
            "lmdb",
        ),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import cbor2\n",
            "multiraft/raft/x.py",
            "multiraft.raft.x",
            3,
            "cbor2",
        ),
        ("import concurrent.futures\n", "regions/x.py", "regions.x", 1, "concurrent.futures"),
        (
            "from multiraft.store import Replica\n",
            "regions/x.py",
            "regions.x",
            1,
            "multiraft.store",
        ),
        (
            "from multiraft import metrics\n",
            "multiraft/raft/x.py",
            "multiraft.raft.x",
            1,
            "multiraft.metrics",
        ),
        ("import multiraft\n", "multiraft/raft/x.py", "multiraft.raft.x", 1, "multiraft"),
        (
            "from regions import Region\n",
            "multiraft/raft/x.py",
            "multiraft.raft.x",
            1,
            "regions.Region",
        ),
        ("import tests.datadriven\n", "regions/x.py", "regions.x", 1, "tests.datadriven"),
        (
            "from ..store import Replica\n",
            "multiraft/raft/x.py",
            "multiraft.raft.x",
            1,
            "multiraft.store",
        ),
        ("from .. import cli\n", "multiraft/raft/x.py", "multiraft.raft.x", 1, "multiraft.cli"),
        ("from ... import x\n", "multiraft/raft/x.py", "multiraft.raft.x", 1, None),
        (
            "from ...wire import codec\n",
            "multiraft/raft/sub/__init__.py",
            "multiraft.raft.sub",
            1,
            "multiraft.wire",
        ),
        (
            "import importlib\nimportlib.import_module('prometheus_client')\n",
            "regions/x.py",
            "regions.x",
            2,
            "prometheus_client",
        ),
        (
            "from importlib import import_module\nimport_module('socket')\n",
            "regions/x.py",
            "regions.x",
            2,
            "socket",
        ),
        ("__import__('asyncio')\n", "regions/x.py", "regions.x", 1, "asyncio"),
        (
            "import importlib\nimportlib.import_module('..storage', 'multiraft.raft')\n",
            "regions/x.py",
            "regions.x",
            2,
            "multiraft.storage",
        ),
        (
            "import importlib\nimportlib.import_module('..storage', package='multiraft.raft')\n",
            "regions/x.py",
            "regions.x",
            2,
            "multiraft.storage",
        ),
        (
            "import importlib\nimportlib.import_module('.x', __package__)\n",
            "regions/x.py",
            "regions.x",
            2,
            None,
        ),
        (
            "import importlib\nname = 'time'\nimportlib.import_module(name)\n",
            "regions/x.py",
            "regions.x",
            3,
            None,
        ),
    ],
)
def test_checker_catches_forbidden_imports(
    source: str, path: str, module: str, line: int, culprit: str | None
) -> None:
    layer = "regions" if module.startswith("regions") else "multiraft.raft"
    [violation] = check_source(source, path, module, layer)
    assert (violation.path, violation.line, violation.module) == (path, line, culprit)
    assert str(violation).startswith(f"{path}:{line}: imports ")


def test_checker_reports_every_violation() -> None:
    source = "import time\nimport random\nfrom multiraft import store\n"
    lines = [v.line for v in check_source(source, "regions/x.py", "regions.x", "regions")]
    assert lines == [1, 2, 3]


@pytest.mark.parametrize(
    ("source", "path", "module"),
    [
        ("import dataclasses, timeit, randomness\n", "regions/x.py", "regions.x"),
        ("from multiraft.raft.types import Entry\n", "multiraft/raft/x.py", "multiraft.raft.x"),
        ("from multiraft import raft\n", "regions/x.py", "regions.x"),
        (
            "from . import types\nfrom .types import Entry\n",
            "multiraft/raft/x.py",
            "multiraft.raft.x",
        ),
        ("from .. import types\n", "multiraft/raft/quorum/joint.py", "multiraft.raft.quorum.joint"),
        ("from ..wire import codec\n", "multiraft/raft/sub/__init__.py", "multiraft.raft.sub"),
        (
            "from .majority import Index\n",
            "multiraft/raft/quorum/__init__.py",
            "multiraft.raft.quorum",
        ),
        ("from regions.region import Region\nfrom . import epoch\n", "regions/x.py", "regions.x"),
        ("from multiraft.raft.types import ConfChange\n", "regions/x.py", "regions.x"),
        (
            "import importlib\nimportlib.import_module('.types', 'multiraft.raft')\n",
            "multiraft/raft/x.py",
            "multiraft.raft.x",
        ),
        ("from .raft import RawNode\n", "multiraft/__init__.py", "multiraft"),
    ],
)
def test_checker_allows_the_layers_own_imports(source: str, path: str, module: str) -> None:
    layer = "regions" if module.startswith("regions") else "multiraft.raft"
    assert check_source(source, path, module, layer) == []
