"""The Alembic migrations build exactly the schema the code declares, on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import Session, SQLModel

import hub.tables  # noqa: F401 - every table on SQLModel.metadata
from hub.db import make_engine, migrate
from hub.relay.outbox import OutboxEntry
from tests.postgres import postgres_bin, temporary_postgres


def assert_schema_matches_code(url: str) -> None:
    engine = make_engine(url)
    migrate(engine)
    migrate(engine)  # a second start finds nothing to do
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert differences == [], f"the models changed without a migration: {differences}"
    assert set(SQLModel.metadata.tables) <= set(inspect(engine).get_table_names())
    with Session(engine) as session:  # the tables are usable, not just present
        assert session.query(OutboxEntry).count() == 0
    engine.dispose()


def test_sqlite_migrations_match_the_models(tmp_path: Path) -> None:
    assert_schema_matches_code(f"sqlite:///{tmp_path / 'platform.sqlite'}")


@pytest.mark.skipif(postgres_bin() is None, reason="PostgreSQL server binaries are not installed on this machine")
def test_postgres_migrations_match_the_models() -> None:
    with temporary_postgres() as url:
        assert_schema_matches_code(url)
