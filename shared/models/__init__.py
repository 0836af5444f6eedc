"""SQLModel tables, one module per family. Importing this package registers every table."""

from shared.models.accounts import Group, GroupMembership, User
from shared.models.base import metadata
from shared.models.discovery import Node, NodeStatus, ScanChunk, ScanRange, ScanStatus
from shared.models.outbox import OutboxEvent

__all__ = [
    "Group",
    "GroupMembership",
    "Node",
    "NodeStatus",
    "OutboxEvent",
    "ScanChunk",
    "ScanRange",
    "ScanStatus",
    "User",
    "metadata",
]
