"""account tokens: never-reused user and group ids, token versions, login sessions

On SQLite `user` and `group` are rebuilt with AUTOINCREMENT (as 0009 did for the other tables
whose ids travel outside the database): tokens and pool events name them by id. Every user gets
a token version carried in its tokens, and `login_session` tracks the refresh tokens each login
leads to, so a used one is refused. Servers get the code of their last inventory failure, the
part of it everyone who sees the server may read.

Revision ID: 8cb96bfe893a
Revises: a7f3c2d81e40
Create Date: 2026-11-28 10:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "8cb96bfe893a"
down_revision: str | None = "a7f3c2d81e40"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _recreate(autoincrement: bool) -> dict[str, Any]:
    """Batch options: on SQLite rebuild the table with or without AUTOINCREMENT."""
    if op.get_bind().dialect.name != "sqlite":
        return {}
    return {"recreate": "always", "table_kwargs": {"sqlite_autoincrement": autoincrement}}


def upgrade() -> None:
    with op.batch_alter_table("group", **_recreate(True)):
        pass
    with op.batch_alter_table("user", **_recreate(True)) as batch_op:
        batch_op.add_column(
            sa.Column("token_version", sa.Integer(), nullable=False, server_default="1")
        )
    op.create_table(
        "login_session",
        sa.Column("id", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("refresh_jti", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["user.id"],
            name=op.f("fk_login_session_user_id_user"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_session")),
    )
    with op.batch_alter_table("login_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_login_session_expires_at"), ["expires_at"])
        batch_op.create_index(batch_op.f("ix_login_session_user_id"), ["user_id"])
    with op.batch_alter_table("server", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inventory_error_code", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("server", schema=None) as batch_op:
        batch_op.drop_column("inventory_error_code")
    with op.batch_alter_table("login_session", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_login_session_user_id"))
        batch_op.drop_index(batch_op.f("ix_login_session_expires_at"))
    op.drop_table("login_session")
    with op.batch_alter_table("user", **_recreate(False)) as batch_op:
        batch_op.drop_column("token_version")
    with op.batch_alter_table("group", **_recreate(False)):
        pass
