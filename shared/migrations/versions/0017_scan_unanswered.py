"""scan unanswered

How many addresses of a scan run accepted a TCP connection but never answered the Redfish probe
(after a second, slower try), per chunk and per range, and the warning a run ends with when any
did: such a run may have missed BMCs, and says so.

Revision ID: 5c1d7a9e2b43
Revises: 9c4d2a7e5b13
Create Date: 2026-12-07 23:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "5c1d7a9e2b43"
down_revision: str | None = "9c4d2a7e5b13"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("scan_range") as batch:
        batch.add_column(
            sa.Column("addresses_unanswered", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(
            sa.Column("last_warning", sqlmodel.sql.sqltypes.AutoString(), nullable=True)
        )
    with op.batch_alter_table("scan_chunk") as batch:
        batch.add_column(
            sa.Column("addresses_unanswered", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("scan_chunk") as batch:
        batch.drop_column("addresses_unanswered")
    with op.batch_alter_table("scan_range") as batch:
        batch.drop_column("last_warning")
        batch.drop_column("addresses_unanswered")
