"""Every SQL statement lives in jobtask.store: no other module builds SQL.

A module outside services/jobtask/store/ may name a connection's type
(sqlalchemy.ext.asyncio) and parse a URL (sqlalchemy.engine), nothing else of SQLAlchemy,
and never the tables (jobtask.store.schema): statements are built from those two.
"""

from __future__ import annotations

import ast
from pathlib import Path

SERVICES = Path(__file__).resolve().parents[2] / "services" / "jobtask"
STORE = SERVICES / "store"
ALLOWED = {"sqlalchemy.ext.asyncio", "sqlalchemy.engine"}

# Files that still build SQL, each with why it waits (issue 15): remove a file from this list
# once its statements have moved into a store module. (None left: every statement is the
# store's.)
PENDING: set[str] = set()


def _sql_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module is not None:
            names = [node.module]
        else:
            continue
        for name in names:
            if name == "jobtask.store.schema" or (
                name.split(".")[0] == "sqlalchemy" and name not in ALLOWED
            ):
                found.append(f"line {node.lineno}: {name}")
    return found


def test_no_module_outside_the_store_builds_sql() -> None:
    offenders = {}
    for path in sorted(SERVICES.rglob("*.py")):
        name = path.relative_to(SERVICES).as_posix()
        if path.is_relative_to(STORE) or name in PENDING:
            continue
        found = _sql_imports(path)
        if found:
            offenders[name] = found
    assert offenders == {}


def test_every_pending_file_still_builds_sql() -> None:
    """A file that moved its statements leaves PENDING, so the rule covers it from then on."""
    done = sorted(name for name in PENDING if not _sql_imports(SERVICES / name))
    assert done == []
