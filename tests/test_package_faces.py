"""The lazy package faces (PEP 562) give every public name, and say the same three times.

Each of these `__init__`s lists its names in a TYPE_CHECKING import block (for mypy),
in `_WHERE` (what `__getattr__` imports) and in `__all__`; a name missing from one
of them would break only the code that asks for it.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

LAZY = ("gateway", "shards", "link", "health")
ROOT = Path(__file__).resolve().parent.parent


def _type_checking_names(package: str) -> dict[str, str]:
    """Public name -> the module it is imported from, in the TYPE_CHECKING block."""
    tree = ast.parse((ROOT / package / "__init__.py").read_text(encoding="utf-8"))
    block = next(
        node
        for node in tree.body
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"
    )
    found: dict[str, str] = {}
    for node in block.body:
        assert isinstance(node, ast.ImportFrom)
        assert node.module is not None
        for alias in node.names:
            found[alias.asname or alias.name] = node.module
    return found


@pytest.mark.parametrize("package", LAZY)
def test_the_three_lists_agree(package: str) -> None:
    face = importlib.import_module(f"leasehold.{package}")
    typed = _type_checking_names(package)
    where = face._WHERE
    assert sorted(face.__all__) == sorted(where) == sorted(typed)
    assert {n: f"leasehold.{package}.{m}" for n, (m, _) in where.items()} == typed


@pytest.mark.timeout(60)
@pytest.mark.parametrize("package", LAZY)
def test_every_name_is_the_one_its_module_defines(package: str) -> None:
    # A fresh interpreter: the names are looked up the first time, as a process does.
    code = (
        "import importlib, sys\n"
        f"face = importlib.import_module('leasehold.{package}')\n"
        "for name, (module, attribute) in face._WHERE.items():\n"
        "    defined = getattr(importlib.import_module(f'{face.__name__}.{module}'), attribute)\n"
        "    assert getattr(face, name) is defined, name\n"
        "    assert vars(face)[name] is defined, name\n"
        "print(len(face._WHERE))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert int(done.stdout) == len(importlib.import_module(f"leasehold.{package}").__all__)


@pytest.mark.parametrize("package", LAZY)
def test_an_unknown_name_is_an_attribute_error(package: str) -> None:
    face = importlib.import_module(f"leasehold.{package}")
    with pytest.raises(AttributeError, match="no_such_name"):
        face.no_such_name  # noqa: B018
    with pytest.raises(ImportError):
        exec(f"from leasehold.{package} import no_such_name")
