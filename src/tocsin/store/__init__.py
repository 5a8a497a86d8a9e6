"""The store: SQLAlchemy tables, Alembic migrations, and conversion to and from the domain."""
