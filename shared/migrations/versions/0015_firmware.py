"""firmware inventory identity

Firmware inventory entries keep what matching a catalog binary needs (SoftwareId, RelatedItem,
HPE DeviceClass and Targets) and their slot, so backup, staged and previous images never count
as the running version; servers keep their running BMC version. Existing entries are `active`
until the next collection classifies them.

Revision ID: 5c1f7a2e9b34
Revises: 3b8e2f6d1a70
Create Date: 2026-12-07 23:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "5c1f7a2e9b34"
down_revision: str | None = "3b8e2f6d1a70"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("firmware_component", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("software_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.add_column(
            sa.Column("related_items", sa.JSON(), nullable=False, server_default="[]")
        )
        batch_op.add_column(
            sa.Column("device_class", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True)
        )
        batch_op.add_column(sa.Column("targets", sa.JSON(), nullable=False, server_default="[]"))
        batch_op.add_column(
            sa.Column(
                "slot",
                sqlmodel.sql.sqltypes.AutoString(length=16),
                nullable=False,
                server_default="active",
            )
        )
    with op.batch_alter_table("server", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("bmc_version", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch_op.create_index(batch_op.f("ix_server_bmc_version"), ["bmc_version"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("server", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_server_bmc_version"))
        batch_op.drop_column("bmc_version")
    with op.batch_alter_table("firmware_component", schema=None) as batch_op:
        for column in ("slot", "targets", "device_class", "related_items", "software_id"):
            batch_op.drop_column(column)
