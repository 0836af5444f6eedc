"""Every event type Racksmith emits, with its payload, in one place — and the one way to build each.

An event's ``data`` is the entity as the REST API shows it (its ``…Public`` model) plus what
changed; the payload models below say exactly which fields. Its version is the entity's change
counter (``version`` column, or the scan run), so the same change always has the same event id.

This catalog is the contract: the AsyncAPI document is generated from it, the SSE and webhook
filters validate against it, and building an event that is not listed here (or whose data does not
fit its payload) raises — so the code cannot emit what the document does not describe.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel, Field

from shared.contracts.events import TYPE_PREFIX, CloudEvent, make_event
from shared.models import (
    FirmwareBinary,
    Job,
    Node,
    OSImage,
    Pool,
    ScanRange,
    Server,
    Switch,
    Webhook,
)
from shared.models.baselines import ServerStatus
from shared.models.discovery import NodePublic, ScanRangePublic
from shared.models.firmware import FirmwarePublic
from shared.models.jobs import JobPublic
from shared.models.os_images import OSImagePublic
from shared.models.servers import ServerPublic
from shared.models.switches import SwitchPublic
from shared.models.webhooks import WebhookPublic, WebhookState


class PoolEventData(BaseModel):
    id: int
    name: str
    description: str
    group: int | None
    parent: int | None


class NodeUpdatedData(NodePublic):
    changed: list[str] = Field(description="The facts discovery saw change, e.g. `vendor`.")


class NodeRegisteredData(NodePublic):
    servers: list[int] = Field(description="Ids of the servers behind this BMC.")


class ServerInventoriedData(ServerPublic):
    changed: list[str] = Field(
        description="Families that changed: system, processors, memory, ethernet_interfaces, "
        "storages, firmwares."
    )


class ServerUnassignedData(ServerPublic):
    previous_pool: int = Field(description="The pool the server left.")


class SwitchUnassignedData(SwitchPublic):
    previous_pool: int = Field(description="The pool the switch left.")


class ServerPowerChangedData(ServerPublic):
    previous_power_state: str | None = Field(description="The power state read before.")


class ServerComplianceChangedData(ServerPublic):
    baseline: int = Field(description="The firmware baseline.")
    firmware_compliance: ServerStatus = Field(
        description="The server's status against the baseline now."
    )
    previous_firmware_compliance: ServerStatus | None = Field(
        description="Its status before (null: first computed, e.g. a new baseline)."
    )


class JobEventData(JobPublic):
    resource_pool: int | None = Field(
        description="The pool of the job's server when this happened (who may see the event)."
    )


class FirmwareUpdatedData(FirmwarePublic):
    changed: list[str] = Field(description="The fields that changed, e.g. `version`.")


class OSImageUpdatedData(OSImagePublic):
    changed: list[str] = Field(description="The fields that changed, e.g. `boot_modes`.")


class WebhookEventData(WebhookState):
    """A webhook as its events show it: only the origin of its URL — paths and queries often
    carry the receiver's token (Slack-style), and events reach every subscriber."""

    origin: str = Field(description="`scheme://host[:port]` of the webhook's URL.")


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal goes back in brackets
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


@dataclass(frozen=True)
class EventType:
    entity: str
    change: str
    payload: type[BaseModel]
    description: str

    @property
    def type(self) -> str:
        return f"{TYPE_PREFIX}.{self.entity}.{self.change}"

    @property
    def short(self) -> str:
        """``entity.change``, the form filters accept besides the full type."""
        return f"{self.entity}.{self.change}"


EVENT_TYPES: tuple[EventType, ...] = (
    EventType("scan_range", "started", ScanRangePublic, "A scan run began."),
    EventType("scan_range", "completed", ScanRangePublic, "A scan run ended; counts in data."),
    EventType("scan_range", "failed", ScanRangePublic, "A scan run ended in error."),
    EventType("node", "discovered", NodePublic, "A BMC endpoint was found for the first time."),
    EventType(
        "node",
        "updated",
        NodeUpdatedData,
        "Discovery saw different facts; `changed` lists them, `fingerprint_changed` says the "
        "certificate seen is not the trusted one.",
    ),
    EventType("node", "registering", NodePublic, "Registration was requested."),
    EventType("node", "registered", NodeRegisteredData, "Registration succeeded."),
    EventType("node", "error", NodePublic, "Registration failed; `error` says why."),
    EventType(
        "node",
        "certificate_changed",
        NodePublic,
        "The BMC presents a certificate other than the trusted one (`fingerprint` vs "
        "`trusted_fingerprint`): no BMC work runs for the node, and no credential is sent to "
        "it, until a superuser accepts the certificate.",
    ),
    EventType(
        "node",
        "certificate_accepted",
        NodePublic,
        "A superuser accepted the certificate the BMC presents; it is the trusted one now and "
        "BMC work resumes.",
    ),
    EventType("server", "created", ServerPublic, "A ComputerSystem became a managed server."),
    EventType("server", "inventoried", ServerInventoriedData, "A collection found changes."),
    EventType(
        "server",
        "inventory_failed",
        ServerPublic,
        "A collection failed; `inventory_error` says why, the previous inventory is kept.",
    ),
    EventType(
        "server",
        "power_changed",
        ServerPowerChangedData,
        "Racksmith read a different `power_state` (a job, an inventory collection).",
    ),
    EventType(
        "server",
        "firmware_compliance_changed",
        ServerComplianceChangedData,
        "The server's status against a firmware baseline changed (`compliant`, "
        "`non_compliant`, `unknown`): its firmware inventory or the baseline changed. The "
        "report per component is `GET /api/server/{id}/firmware_compliance/`.",
    ),
    EventType("server", "assigned", ServerPublic, "The server was put in a pool."),
    EventType("server", "unassigned", ServerUnassignedData, "The server left its pool."),
    EventType("switch", "assigned", SwitchPublic, "The switch was put in a pool."),
    EventType("switch", "unassigned", SwitchUnassignedData, "The switch left its pool."),
    EventType("pool", "created", PoolEventData, "A pool was created."),
    EventType(
        "pool", "updated", PoolEventData, "A pool's name, description, group or parent changed."
    ),
    EventType("pool", "deleted", PoolEventData, "A pool was deleted."),
    EventType("job", "created", JobEventData, "A job was accepted; `state` is `pending`."),
    EventType("job", "started", JobEventData, "A worker took the job up (`running`)."),
    EventType(
        "job",
        "progress",
        JobEventData,
        "The job moved to another `step` or `progress` (at most one event per job every few "
        "seconds; the last state is never skipped).",
    ),
    EventType(
        "job",
        "waiting",
        JobEventData,
        "The job waits for something outside Racksmith; `waiting_for` says what.",
    ),
    EventType("job", "completed", JobEventData, "The job did what it was asked."),
    EventType(
        "job", "failed", JobEventData, "The job ended in failure; `error_code` and `error` say why."
    ),
    EventType("job", "cancelled", JobEventData, "The job was cancelled at a step boundary."),
    EventType(
        "firmware",
        "added",
        FirmwarePublic,
        "A firmware binary entered the catalog: uploaded (`status` ready) or to be fetched from "
        "its `source_url` (`status` uploading).",
    ),
    EventType(
        "firmware",
        "ready",
        FirmwarePublic,
        "The binary is stored and verified (SHA-256, size) and can be used.",
    ),
    EventType(
        "firmware",
        "invalid",
        FirmwarePublic,
        "Fetching the binary from its `source_url` failed or it did not match; `status_reason` "
        "says why. Nothing is stored.",
    ),
    EventType(
        "firmware", "updated", FirmwareUpdatedData, "Descriptive fields or matching rules changed."
    ),
    EventType("firmware", "deleted", FirmwarePublic, "The binary left the catalog."),
    EventType(
        "os_image",
        "added",
        OSImagePublic,
        "An OS image entered the catalog: uploaded (`status` ready) or to be fetched from its "
        "`source_url` (`status` uploading).",
    ),
    EventType("os_image", "ready", OSImagePublic, "The image is stored and verified."),
    EventType(
        "os_image",
        "invalid",
        OSImagePublic,
        "Fetching the image from its `source_url` failed or it did not match; `status_reason` "
        "says why.",
    ),
    EventType("os_image", "updated", OSImageUpdatedData, "Descriptive fields changed."),
    EventType("os_image", "deleted", OSImagePublic, "The image left the catalog."),
    EventType(
        "webhook",
        "disabled",
        WebhookEventData,
        "Sustained delivery failures disabled the webhook; `disabled_reason` says why.",
    ),
)

BY_TYPE: dict[str, EventType] = {t.type: t for t in EVENT_TYPES}
ENTITIES: tuple[str, ...] = tuple(dict.fromkeys(t.entity for t in EVENT_TYPES))


class UnknownEventTypeError(ValueError):
    """An event type that is not in the catalog (a programming error, or a bad filter)."""


def lookup(name: str) -> EventType:
    """The event type for ``io.racksmith.node.registered`` or its short form ``node.registered``."""
    full = name if name.startswith(f"{TYPE_PREFIX}.") else f"{TYPE_PREFIX}.{name}"
    try:
        return BY_TYPE[full]
    except KeyError:
        raise UnknownEventTypeError(f"Unknown event type {name!r}.") from None


def build(
    entity: str,
    entity_id: int,
    change: str,
    *,
    version: int | str,
    public: BaseModel,
    extra: dict[str, object],
) -> CloudEvent:
    """The event for ``change`` of one entity, its data checked against the catalog.

    Building is the contract's part; staging it with the change (``outbox.stage``) is the
    messaging machinery's.
    """
    event_type = lookup(f"{entity}.{change}")
    data = event_type.payload.model_validate(public.model_dump() | extra)
    return make_event(entity, entity_id, change, version=version, data=data.model_dump(mode="json"))


def scan_range_event(scan_range: ScanRange, change: str) -> CloudEvent:
    assert scan_range.id is not None
    public = ScanRangePublic.of(scan_range)
    return build(
        "scan_range", scan_range.id, change, version=scan_range.run, public=public, extra={}
    )


def node_event(node: Node, change: str, **extra: object) -> CloudEvent:
    assert node.id is not None
    public = NodePublic.of(node)
    return build("node", node.id, change, version=node.version, public=public, extra=extra)


def pool_event(pool: Pool, change: str) -> CloudEvent:
    assert pool.id is not None
    public = PoolEventData(
        id=pool.id,
        name=pool.name,
        description=pool.description,
        group=pool.group_id,
        parent=pool.parent_id,
    )
    return build("pool", pool.id, change, version=pool.version, public=public, extra={})


def switch_event(switch: Switch, change: str, **extra: object) -> CloudEvent:
    assert switch.id is not None
    public = SwitchPublic.of(switch)
    return build("switch", switch.id, change, version=switch.version, public=public, extra=extra)


def server_event(
    server: Server, change: str, *, version: int | str | None = None, **extra: object
) -> CloudEvent:
    """``version``: when the change is numbered apart from the server's own changes (its
    status against one baseline: ``<baseline>.<revision>``)."""
    assert server.id is not None
    public = ServerPublic.of(server)
    numbered = server.version if version is None else version
    return build("server", server.id, change, version=numbered, public=public, extra=extra)


def job_event(job: Job, change: str, *, resource_pool: int | None) -> CloudEvent:
    assert job.id is not None
    public = JobPublic.of(job)
    extra: dict[str, object] = {"resource_pool": resource_pool}
    return build("job", job.id, change, version=job.version, public=public, extra=extra)


def webhook_event(webhook: Webhook, change: str) -> CloudEvent:
    assert webhook.id is not None
    shown = WebhookPublic.of(webhook).model_dump(exclude={"url"})
    public = WebhookEventData.model_validate(shown | {"origin": origin_of(webhook.url)})
    return build("webhook", webhook.id, change, version=webhook.version, public=public, extra={})


def firmware_event(firmware: FirmwareBinary, change: str, **extra: object) -> CloudEvent:
    assert firmware.id is not None
    public = FirmwarePublic.of(firmware)
    return build(
        "firmware", firmware.id, change, version=firmware.revision, public=public, extra=extra
    )


def os_image_event(image: OSImage, change: str, **extra: object) -> CloudEvent:
    assert image.id is not None
    public = OSImagePublic.of(image)
    return build("os_image", image.id, change, version=image.revision, public=public, extra=extra)
