"""deployments

A server's deployed OS image and the status of its latest deployment, and the one-time
call-home of each deployment job.

Revision ID: 9c4d2a7e5b13
Revises: 5c1f7a2e9b34
Create Date: 2026-12-07 23:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "9c4d2a7e5b13"
down_revision: str | None = "5c1f7a2e9b34"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deployment_call_home",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("token_sha256", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("called_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.Column("caller", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["job.id"],
            name=op.f("fk_deployment_call_home_job_id_job"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_call_home")),
        sa.UniqueConstraint("job_id", name=op.f("uq_deployment_call_home_job_id")),
        sa.UniqueConstraint("token_sha256", name=op.f("uq_deployment_call_home_token_sha256")),
    )
    # SQLite rebuilds the table for the foreign key: it must keep AUTOINCREMENT (ids are never
    # reused, see 0009).
    with op.batch_alter_table("server", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.add_column(sa.Column("os_image_id", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "deployment_status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True
            )
        )
        batch_op.create_index(batch_op.f("ix_server_os_image_id"), ["os_image_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_server_deployment_status"), ["deployment_status"], unique=False
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_server_os_image_id_os_image"),
            "os_image",
            ["os_image_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    # SQLite rebuilds the table for the foreign key: it must keep AUTOINCREMENT (ids are never
    # reused, see 0009).
    with op.batch_alter_table("server", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_server_os_image_id_os_image"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_server_deployment_status"))
        batch_op.drop_index(batch_op.f("ix_server_os_image_id"))
        batch_op.drop_column("deployment_status")
        batch_op.drop_column("os_image_id")
    op.drop_table("deployment_call_home")
