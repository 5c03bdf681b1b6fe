"""The package rules hold: who may import whom, and only through a package's face.

Read from the source with `ast`, so a rule broken by an import inside a function
is caught too. Tests are white-box and may import anything; the rules are for the
shipped packages (see leasehold/__init__.py).
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("core", "shards", "link", "gateway", "health", "proto", "bench")
ROOT_PACKAGE = "leasehold"  # the composition root: leasehold/*.py
# Which of our packages each may import (besides itself).
ALLOWED: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "shards": frozenset({"core"}),
    "link": frozenset({"core", "shards"}),
    "gateway": frozenset({"core", "shards", "link", "proto"}),
    "health": frozenset({"core", "shards"}),
    "proto": frozenset(),
    "bench": frozenset({"core", "shards", "health", "proto", ROOT_PACKAGE}),
    ROOT_PACKAGE: frozenset({*PACKAGES}),
}
# core is pure: no event loop, no wire formats, no clock.
CORE_FORBIDDEN = ("trio", "grpclib", "asyncio", "msgpack", "google", "time", "socket")


def _sources() -> list[tuple[str, Path]]:
    found = [(ROOT_PACKAGE, path) for path in sorted((ROOT / "leasehold").glob("*.py"))]
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if not path.name.endswith(("_pb2.py", "_grpc.py")):
                found.append((package, path))
    return found


def _imported(source: str) -> list[str]:
    """Every module name the source imports, `from x import y` giving `x.y` too."""
    names: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _our_package(name: str) -> str | None:
    parts = name.split(".")
    if parts[0] != "leasehold" or len(parts) == 1:  # the bare namespace imports nothing
        return None
    if len(parts) > 1 and parts[1] in PACKAGES:
        return parts[1]
    return ROOT_PACKAGE


def _violations(package: str, label: str, source: str) -> list[str]:
    problems: list[str] = []
    for name in _imported(source):
        target = _our_package(name)
        where = f"{label} imports {name}"
        if name.split(".")[0] in PACKAGES:
            problems.append(f"{where}: use the leasehold. namespace")
        if target is None or target == package:
            continue
        if target not in ALLOWED[package]:
            problems.append(f"{where}: {package} may not import {target}")
        private = [part for part in name.split(".")[1:] if part.startswith("_")]
        if private:
            problems.append(f"{where}: {private[0]} is private to {target}")
    if package == "core":
        problems.extend(
            f"{label} imports {name}: core does no I/O and reads no clock"
            for name in _imported(source)
            if name.split(".")[0] in CORE_FORBIDDEN
        )
    return problems


def test_every_package_keeps_its_import_rules() -> None:
    sources = _sources()
    assert len(sources) > 50  # the walk found the tree
    problems = [
        problem
        for package, path in sources
        for problem in _violations(package, _label(path), path.read_text(encoding="utf-8"))
    ]
    assert problems == []


def _label(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_only_the_cli_imports_bench() -> None:
    importers = {
        _label(path)
        for package, path in _sources()
        if package != "bench"
        and any(_our_package(n) == "bench" for n in _imported(path.read_text(encoding="utf-8")))
    }
    assert importers == {"leasehold/cli.py"}


@pytest.mark.parametrize(
    ("package", "source"),
    [
        ("shards", "from leasehold.gateway import Router"),
        ("gateway", "from leasehold.bench import main"),
        ("core", "import trio"),
        ("core", "from time import monotonic"),
        ("bench", "from leasehold.shards._journal import JournalWriter"),
        ("health", "from leasehold.core import _feed"),
        ("gateway", "import core"),
    ],
)
def test_the_rules_catch_a_planted_import(package: str, source: str) -> None:
    assert _violations(package, f"{package}/_planted.py", source) != []


@pytest.mark.timeout(60)
def test_the_install_puts_only_leasehold_on_the_path(tmp_path: Path) -> None:
    names = [*PACKAGES, "tests", "leasehold"]
    code = f"import importlib.util as u; print([n for n in {names} if u.find_spec(n)])"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,  # not the repository: only what the install provides
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "['leasehold']"
