"""never reuse ids on SQLite

Tables whose ids appear in events and API URLs are rebuilt with AUTOINCREMENT on SQLite, so the
id of a deleted row is never handed out again (see shared.models.base.NEVER_REUSE_IDS). SQLite
seeds the AUTOINCREMENT counter from the copied rows, so ids already used stay used. PostgreSQL
sequences never reuse ids: nothing to do there.

Revision ID: 5c1e0f3a9b27
Revises: aaa8ffb4d49d
Create Date: 2026-11-27 02:30:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "5c1e0f3a9b27"
down_revision: str | None = "aaa8ffb4d49d"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("scan_range", "node", "server", "pool", "switch", "webhook")


def _rebuild(autoincrement: bool) -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    for table in TABLES:
        with op.batch_alter_table(
            table, recreate="always", table_kwargs={"sqlite_autoincrement": autoincrement}
        ):
            pass


def upgrade() -> None:
    _rebuild(True)


def downgrade() -> None:
    _rebuild(False)
