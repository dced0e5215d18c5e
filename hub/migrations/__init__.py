"""Alembic migrations of the platform database (`hub.db.migrate` applies them at service start)."""
