"""Alembic environment and versions for Magnetar's PostgreSQL schema."""
