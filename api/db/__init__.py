"""The database: the async engine, the tables, their column types and the Alembic migrations.

May import api.config and api.errors only.
"""
