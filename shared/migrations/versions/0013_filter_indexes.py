"""index for the server host name filter

Every scalar field of a list is a filter now; the host name is the one scripts look servers up
by, and without an index that lookup scans the table (bench/api_list.py, "filter hostname").

Revision ID: 7e3b2c9d4f10
Revises: 7d2b4c81e6f0
Create Date: 2026-12-07 19:20:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "7e3b2c9d4f10"
down_revision: str | None = "7d2b4c81e6f0"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("server", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_server_hostname"), ["hostname"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("server", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_server_hostname"))
