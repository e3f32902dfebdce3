"""Imports run one way: the pure core knows nothing of storage, asyncio, MQTT, HTTP or the service."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import ledger.core

CORE = Path(ledger.core.__file__).parent
FORBIDDEN = ("sqlalchemy", "asyncio", "paho", "fastapi", "ledger.store", "ledger.service", "api", "gateway")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, anywhere in it (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # a relative import stays inside ledger.core by construction
                found.add(f"ledger.core.{node.module or ''}")
            else:
                found.add(node.module or "")
    return found


def forbidden(module: str) -> bool:
    return any(module == f or module.startswith(f + ".") for f in FORBIDDEN)


CORE_FILES = sorted(CORE.glob("*.py"))


def test_the_core_has_modules_to_check():
    assert {p.name for p in CORE_FILES} >= {"lot.py", "journal.py", "borrowing_base.py", "haircut.py"}


@pytest.mark.parametrize("path", CORE_FILES, ids=lambda p: p.name)
def test_a_core_module_imports_no_adapter(path):
    assert sorted(m for m in imported_modules(path) if forbidden(m)) == []


def test_the_guard_would_catch_an_adapter_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("import asyncio\ndef f():\n    from ledger.store.sql import SqlTx\nfrom api import x\n")
    assert sorted(m for m in imported_modules(bad) if forbidden(m)) == ["api", "asyncio", "ledger.store.sql"]
    assert not forbidden("apiary") and not forbidden("ledger.storehouse")
