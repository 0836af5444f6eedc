"""SQLModel tables, one module per family. Importing this package registers every table."""

from shared.models.accounts import Group, GroupMembership, LoginSession, User
from shared.models.artifacts import Artifact, ArtifactGrant, ArtifactKind, ArtifactStatus
from shared.models.base import metadata
from shared.models.baselines import FirmwareBaseline, FirmwareBaselineBinary, FirmwareCompliance
from shared.models.deployments import CallHome
from shared.models.discovery import Node, NodeStatus, ScanChunk, ScanRange, ScanStatus
from shared.models.firmware import FirmwareBinary
from shared.models.inventory import (
    EthernetInterface,
    FirmwareComponent,
    MemoryModule,
    Processor,
    Storage,
)
from shared.models.jobs import Job, JobState
from shared.models.os_images import OSImage
from shared.models.outbox import OutboxEvent
from shared.models.pools import Pool
from shared.models.registration import AuthProfile, Credential
from shared.models.servers import InventoryErrorCode, InventoryStatus, Server
from shared.models.switches import Switch
from shared.models.webhooks import DeliveryStatus, Webhook, WebhookDelivery

__all__ = [
    "Artifact",
    "ArtifactGrant",
    "ArtifactKind",
    "ArtifactStatus",
    "AuthProfile",
    "CallHome",
    "Credential",
    "DeliveryStatus",
    "EthernetInterface",
    "FirmwareBaseline",
    "FirmwareBaselineBinary",
    "FirmwareBinary",
    "FirmwareCompliance",
    "FirmwareComponent",
    "Group",
    "GroupMembership",
    "InventoryErrorCode",
    "InventoryStatus",
    "Job",
    "JobState",
    "LoginSession",
    "MemoryModule",
    "Node",
    "NodeStatus",
    "OSImage",
    "OutboxEvent",
    "Pool",
    "Processor",
    "ScanChunk",
    "ScanRange",
    "ScanStatus",
    "Server",
    "Storage",
    "Switch",
    "User",
    "Webhook",
    "WebhookDelivery",
    "metadata",
]
