"""Alembic environment: the platform's SQLModel metadata, on the connection `hub.db.migrate` passes in."""

from alembic import context
from sqlmodel import SQLModel

import hub.tables  # noqa: F401 - registers every table on SQLModel.metadata

connection = context.config.attributes["connection"]
context.configure(connection=connection, target_metadata=SQLModel.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
