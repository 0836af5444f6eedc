"""SQLModel tables, one module per family. Importing this package registers every table."""

from shared.models.accounts import Group, GroupMembership, User
from shared.models.base import metadata
from shared.models.discovery import Node, NodeStatus, ScanChunk, ScanRange, ScanStatus
from shared.models.outbox import OutboxEvent
from shared.models.registration import AuthProfile, Credential
from shared.models.servers import Server

__all__ = [
    "AuthProfile",
    "Credential",
    "Group",
    "GroupMembership",
    "Node",
    "NodeStatus",
    "OutboxEvent",
    "ScanChunk",
    "ScanRange",
    "ScanStatus",
    "Server",
    "User",
    "metadata",
]
