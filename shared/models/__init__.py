"""SQLModel tables, one module per family. Importing this package registers every table."""

from shared.models.accounts import Group, GroupMembership, User
from shared.models.base import metadata

__all__ = ["Group", "GroupMembership", "User", "metadata"]
