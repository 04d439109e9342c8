"""Database: engine setup, the SQLite/PostgreSQL seam, tables and Alembic migrations."""
