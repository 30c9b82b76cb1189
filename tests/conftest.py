"""Fixtures shared by the whole suite.

Every test that takes `database` runs twice: on SQLite and on PostgreSQL. PostgreSQL
comes from GPUNET_TEST_POSTGRES_URL (`make test` starts a private server and sets it);
without it those runs fail rather than skip, unless GPUNET_TEST_SQLITE_ONLY=1 is set
explicitly for a quick local loop.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from gpunet.core.clock import FrozenClock
from gpunet.server.db import migrate
from gpunet.server.db.engine import Database, normalise_url
from gpunet.server.db.tables import Base

BACKENDS = (
    ["sqlite"] if os.environ.get("GPUNET_TEST_SQLITE_ONLY") == "1" else ["sqlite", "postgresql"]
)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"
    db = Database(f"sqlite:///{path}")
    migrate.upgrade(db.engine)
    db.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url(worker_id: str) -> Iterator[str]:
    base = os.environ.get("GPUNET_TEST_POSTGRES_URL")
    if not base:
        pytest.fail("GPUNET_TEST_POSTGRES_URL is not set: run the suite with `make test`")
    base = normalise_url(base)
    # The pid keeps concurrent runs of the suite (two checkouts, two shells) apart.
    name = f"gpunet_t_{worker_id}_{os.getpid()}"
    admin = create_engine(base.rsplit("/", 1)[0] + "/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.rsplit("/", 1)[0] + f"/{name}"
    db = Database(url)
    migrate.upgrade(db.engine)
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _reset_postgres(db: Database) -> None:
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with db.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(
            text("INSERT INTO audit_head (id, last_hash, count) VALUES (1, :h, 0)"), {"h": "0" * 64}
        )


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    if request.param == "sqlite":
        path = tmp_path / "gpunet.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        db = Database(f"sqlite:///{path}")
    else:
        db = Database(request.getfixturevalue("postgres_url"), pool_size=5)
        _reset_postgres(db)
    yield db
    db.dispose()


@pytest.fixture
def database_url(database: Database) -> str:
    return database.engine.url.render_as_string(hide_password=False)


@pytest.fixture
def clock() -> FrozenClock:
    import datetime as dt

    return FrozenClock(dt.datetime(2026, 11, 2, 9, 30, tzinfo=dt.UTC))


@pytest.fixture(scope="session")
def worker_id(request: pytest.FixtureRequest) -> str:
    """pytest-xdist's worker name, or 'main' without xdist."""
    workerinput = getattr(request.config, "workerinput", None)
    return workerinput["workerid"] if workerinput else "main"
