"""Dump every table's rows, so a test can show that a refused request changed nothing.

Tables are read from the live database (not from the ORM metadata), so a table added
by a later migration is covered without touching this file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import MetaData, Table, select

from gpunet.server.db.engine import Database

# Tables that legitimately change on requests that are refused, and why:
# - rate_counters: the per-address write/login/enroll limits count every *attempt*, in
#   their own short transaction before credentials are checked, precisely so that
#   refused attempts are counted too (otherwise a credential-stuffer would never be
#   throttled). A refused request therefore bumps a counter by design.
# - device_nonces: the replay guard remembers each nonce of a correctly signed device
#   request; it records that a signature was seen, not any state of the network, and
#   it is pruned after the signature window.
# - login_throttle: a wrong password is refused (401) and yet counted against its
#   account, for the same reason as rate_counters: a guess that left no trace could be
#   repeated without end (services.login_throttle).
VOLATILE = frozenset({"rate_counters", "device_nonces", "login_throttle"})

Row = tuple[Any, ...]
Snapshot = dict[str, dict[Row, dict[str, Any]]]


# Reflecting the schema costs more than reading a test database's rows, and every test
# database of one backend is migrated to the same schema: reflect once per backend.
_TABLES: dict[str, list[Table]] = {}


def tables(database: Database) -> list[Table]:
    if database.dialect not in _TABLES:
        meta = MetaData()
        meta.reflect(database.engine)
        _TABLES[database.dialect] = list(meta.sorted_tables)
    return _TABLES[database.dialect]


def snapshot(database: Database, *, exclude: frozenset[str] = VOLATILE) -> Snapshot:
    """Every row of every table but `exclude`, keyed by table and then primary key."""
    out: Snapshot = {}
    with database.engine.connect() as conn:
        for table in tables(database):
            if table.name in exclude:
                continue
            pk = list(table.primary_key.columns) or list(table.columns)
            rows: dict[Row, dict[str, Any]] = {}
            for row in conn.execute(select(table)).mappings():
                rows[tuple(row[c.name] for c in pk)] = dict(row)
            out[table.name] = rows
    return out


@dataclass
class TableDiff:
    added: dict[Row, dict[str, Any]] = field(default_factory=dict)
    removed: dict[Row, dict[str, Any]] = field(default_factory=dict)
    # primary key -> {column: (before, after)}
    changed: dict[Row, dict[str, tuple[Any, Any]]] = field(default_factory=dict)


def diff(before: Snapshot, after: Snapshot) -> dict[str, TableDiff]:
    """What changed between two snapshots; tables that did not change are left out."""
    out: dict[str, TableDiff] = {}
    for name in sorted(set(before) | set(after)):
        b, a = before.get(name, {}), after.get(name, {})
        d = TableDiff(
            added={k: v for k, v in a.items() if k not in b},
            removed={k: v for k, v in b.items() if k not in a},
        )
        for k in set(a) & set(b):
            cols = {c: (b[k].get(c), a[k].get(c)) for c in set(a[k]) | set(b[k])}
            cols = {c: v for c, v in cols.items() if v[0] != v[1]}
            if cols:
                d.changed[k] = cols
        if d.added or d.removed or d.changed:
            out[name] = d
    return out


def assert_unchanged(before: Snapshot, database: Database, context: str = "") -> None:
    changes = diff(before, snapshot(database))
    assert not changes, f"rows changed {context}: {describe(changes)}"


def describe(changes: dict[str, TableDiff]) -> str:
    parts = []
    for name, d in changes.items():
        parts.append(
            f"{name}: +{list(d.added)} -{list(d.removed)} "
            f"~{ {k: sorted(v) for k, v in d.changed.items()} }"
        )
    return "; ".join(parts) or "nothing"
