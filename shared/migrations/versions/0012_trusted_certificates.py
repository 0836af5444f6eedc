"""trusted certificates

A node's ``trusted_fingerprint`` is the certificate BMC work pins; scans only update
``fingerprint`` (the one last seen). Registered nodes trust the certificate recorded for them,
unless discovery already flagged it as changed: those go to ``certificate_changed`` until a
superuser accepts the certificate they present. ``status`` widens for that name.

Revision ID: 7d2b4c81e6f0
Revises: 8cb96bfe893a
Create Date: 2026-11-28 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "7d2b4c81e6f0"
down_revision: str | None = "8cb96bfe893a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UNTRUSTED = (
    "TLS certificate changed before this node's certificate was trusted: check the BMC, then "
    "accept the certificate it presents (POST /api/node/<id>/accept_certificate/)."
)


def _node_table():  # type: ignore[no-untyped-def]
    # SQLite rebuilds the table to change a column: keep its AUTOINCREMENT (never reused ids).
    return op.batch_alter_table("node", table_kwargs={"sqlite_autoincrement": True})


def upgrade() -> None:
    with _node_table() as batch_op:
        batch_op.add_column(
            sa.Column(
                "trusted_fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True
            )
        )
        batch_op.alter_column(
            "status", existing_type=sa.String(length=16), type_=sa.String(length=32)
        )
    node = sa.table(
        "node",
        sa.column("trusted_fingerprint", sa.String),
        sa.column("fingerprint", sa.String),
        sa.column("fingerprint_changed", sa.Boolean),
        sa.column("registered_at", sa.DateTime),
        sa.column("status", sa.String),
        sa.column("error", sa.Text),
    )
    registered = node.c.registered_at.is_not(None)
    op.execute(
        node.update()
        .where(registered, node.c.fingerprint_changed.is_(sa.false()))
        .values(trusted_fingerprint=node.c.fingerprint)
    )
    op.execute(
        node.update()
        .where(registered, node.c.fingerprint_changed.is_(sa.true()))
        .values(status="certificate_changed", error=UNTRUSTED)
    )


def downgrade() -> None:
    node = sa.table("node", sa.column("status", sa.String), sa.column("error", sa.Text))
    op.execute(node.update().where(node.c.status == "certificate_changed").values(status="error"))
    with _node_table() as batch_op:
        batch_op.alter_column(
            "status", existing_type=sa.String(length=32), type_=sa.String(length=16)
        )
        batch_op.drop_column("trusted_fingerprint")
