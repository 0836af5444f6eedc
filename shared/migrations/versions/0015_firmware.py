"""firmware inventory identity, baselines and compliance

Firmware inventory entries keep what matching a catalog binary needs (SoftwareId, RelatedItem,
HPE DeviceClass and Targets) and their slot, so backup, staged and previous images never count
as the running version; servers keep their running BMC version. Existing entries are `active`
until the next collection classifies them. Firmware baselines name catalog binaries; each
server's status against each baseline is kept to announce its changes.

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

    op.create_table(
        "firmware_baseline",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=2000), nullable=False),
        sa.Column("manufacturer", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("resource_pool_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("updated_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["resource_pool_id"],
            ["pool.id"],
            name=op.f("fk_firmware_baseline_resource_pool_id_pool"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_firmware_baseline")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("firmware_baseline", schema=None) as batch_op:
        for column in ("name", "manufacturer", "resource_pool_id", "created_at"):
            batch_op.create_index(
                batch_op.f(f"ix_firmware_baseline_{column}"), [column], unique=False
            )
    op.create_table(
        "firmware_baseline_binary",
        sa.Column("baseline_id", sa.Integer(), nullable=False),
        sa.Column("firmware_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["baseline_id"],
            ["firmware_baseline.id"],
            name=op.f("fk_firmware_baseline_binary_baseline_id_firmware_baseline"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["firmware_id"],
            ["firmware_binary.id"],
            name=op.f("fk_firmware_baseline_binary_firmware_id_firmware_binary"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint(
            "baseline_id", "firmware_id", name=op.f("pk_firmware_baseline_binary")
        ),
    )
    with op.batch_alter_table("firmware_baseline_binary", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_firmware_baseline_binary_firmware_id"), ["firmware_id"], unique=False
        )
    op.create_table(
        "firmware_compliance",
        sa.Column("server_id", sa.Integer(), nullable=False),
        sa.Column("baseline_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("computed_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["baseline_id"],
            ["firmware_baseline.id"],
            name=op.f("fk_firmware_compliance_baseline_id_firmware_baseline"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["server_id"],
            ["server.id"],
            name=op.f("fk_firmware_compliance_server_id_server"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("server_id", "baseline_id", name=op.f("pk_firmware_compliance")),
    )
    with op.batch_alter_table("firmware_compliance", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_firmware_compliance_baseline_id"), ["baseline_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("firmware_compliance")
    op.drop_table("firmware_baseline_binary")
    op.drop_table("firmware_baseline")
    with op.batch_alter_table("server", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_server_bmc_version"))
        batch_op.drop_column("bmc_version")
    with op.batch_alter_table("firmware_component", schema=None) as batch_op:
        for column in ("slot", "targets", "device_class", "related_items", "software_id"):
            batch_op.drop_column(column)
