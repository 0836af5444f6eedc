"""search indexes: substring search served by an index on both databases

A list's ``search`` is a case-insensitive substring match of every term over the list's search
columns. Here each searched table (``server``, ``user``) gets one index over its *search
document*: the search columns, NULL as '', joined by a space. A term holds no whitespace, so it is
a substring of the document exactly when it is a substring of one of the columns.

- PostgreSQL: a ``pg_trgm`` GIN index on the document expression; the list query compares that
  same expression (``services.api.listing``), so one ``ILIKE`` and one index serve the whole
  search instead of one per column. The per-column trigram indexes of ``0005`` are dropped.
- SQLite: an FTS5 table with the ``trigram`` tokenizer (``<table>_search``, rowid = the row's id),
  kept in step by triggers; the list query asks it ``MATCH '"term"'`` for terms of 3 characters
  or more (the trigram tokenizer's minimum) and falls back to ``LIKE`` for shorter ones.

A later migration that rebuilds ``server`` or ``user`` on SQLite (batch mode's ``recreate``)
drops the triggers with the table: it must call ``create_sqlite_search`` again.

Revision ID: a4c7e19b5d23
Revises: 5c1d7a9e2b43
Create Date: 2026-12-07 23:15:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a4c7e19b5d23"
down_revision: str | None = "5c1d7a9e2b43"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Must list the same columns, in the same order, as the lists' ``ListSpec.search``.
SEARCH_COLUMNS = {
    "server": ("name", "model", "serial_number", "manufacturer", "sku", "bmc_url"),
    "user": ("username", "email"),
}
OLD_SERVER_TRIGRAM_COLUMNS = ("name", "model", "serial_number", "manufacturer", "sku", "bmc_url")


def document(columns: Sequence[str], prefix: str = "") -> str:
    """The search document as SQL (``prefix``: ``new.`` inside a trigger)."""
    return " || ' ' || ".join(f"coalesce({prefix}{column}, '')" for column in columns)


def create_sqlite_search(table: str) -> None:
    # Table and column names come from SEARCH_COLUMNS only: nothing outside reaches this SQL.
    columns = SEARCH_COLUMNS[table]
    index = f"{table}_search"
    quoted = f'"{table}"'
    op.execute(f"CREATE VIRTUAL TABLE IF NOT EXISTS {index} USING fts5(doc, tokenize='trigram')")
    op.execute(f"DROP TRIGGER IF EXISTS {index}_insert")
    op.execute(f"DROP TRIGGER IF EXISTS {index}_update")
    op.execute(f"DROP TRIGGER IF EXISTS {index}_delete")
    op.execute(
        f"CREATE TRIGGER {index}_insert AFTER INSERT ON {quoted} BEGIN "  # noqa: S608
        f"INSERT INTO {index}(rowid, doc) VALUES (new.id, {document(columns, 'new.')}); END"
    )
    op.execute(
        f"CREATE TRIGGER {index}_update AFTER UPDATE OF {', '.join(columns)} ON {quoted} "  # noqa: S608
        f"BEGIN "
        f"UPDATE {index} SET doc = {document(columns, 'new.')} WHERE rowid = new.id; END"
    )
    op.execute(
        f"CREATE TRIGGER {index}_delete AFTER DELETE ON {quoted} BEGIN "  # noqa: S608
        f"DELETE FROM {index} WHERE rowid = old.id; END"
    )
    op.execute(f"DELETE FROM {index}")  # noqa: S608
    rows = f"SELECT id, {document(columns)} FROM {quoted}"  # noqa: S608
    op.execute(f"INSERT INTO {index}(rowid, doc) {rows}")


def _pg_trgm_available() -> bool:
    bind = op.get_bind()
    found = bind.exec_driver_sql(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_trgm'"
    ).first()
    return found is not None


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in SEARCH_COLUMNS:
            create_sqlite_search(table)
        return
    if dialect != "postgresql" or not _pg_trgm_available():
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for table, columns in SEARCH_COLUMNS.items():
        op.execute(
            f'CREATE INDEX IF NOT EXISTS ix_{table}_search_trgm ON "{table}" '
            f"USING gin (({document(columns)}) gin_trgm_ops)"
        )
    for column in OLD_SERVER_TRIGRAM_COLUMNS:
        op.execute(f"DROP INDEX IF EXISTS ix_server_{column}_trgm")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for table in SEARCH_COLUMNS:
            for trigger in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_search_{trigger}")
            op.execute(f"DROP TABLE IF EXISTS {table}_search")
        return
    if dialect != "postgresql" or not _pg_trgm_available():
        return
    for table in SEARCH_COLUMNS:
        op.execute(f"DROP INDEX IF EXISTS ix_{table}_search_trgm")
    for column in OLD_SERVER_TRIGRAM_COLUMNS:
        op.execute(
            f"CREATE INDEX IF NOT EXISTS ix_server_{column}_trgm ON server "
            f"USING gin ({column} gin_trgm_ops)"
        )
