"""What a BMC's UpdateService offers, how to ask it for an update, and how that update is going.

Vendors differ in all three:

- **Method.** A multipart push to ``MultipartHttpPushUri`` needs no route from the BMC back to
  Racksmith, so it is chosen when the BMC advertises one under ``/redfish`` (iDRAC, OpenBMC,
  Supermicro); otherwise ``SimpleUpdate``, the BMC pulling ``ImageURI`` from the artifact server
  (iLO, whose push URI ``/cgi-bin/uploadFile`` is no Redfish resource; AMI; Intel); a plain
  ``HttpPushUri`` (deprecated, one raw body) last. Supermicro only stages a pushed image:
  ``UpdateService.StartUpdate`` flashes it (``start_update``).
- **Parameters** of ``SimpleUpdate`` come from its ``ActionInfo`` (or inline allowable values):
  ``TransferProtocol`` is sent only where the BMC requires it (AMI), matching the URI's scheme;
  a required parameter Racksmith cannot fill makes the method unusable, rather than a request the
  BMC would refuse. AMI's optional ``UpdateComponent`` is filled when it lists the component.
- **The task** is wherever the vendor puts it (`task_reference`): the 202's ``Location``
  (iDRAC's ``JID_…``), the body's ``@odata.id`` when the body is the Task (OpenBMC), or only in a
  message's ``MessageArgs`` (Supermicro). iLO starts no task at all: its progress is the
  UpdateService's ``Oem.Hpe.State`` (`hpe_update_state`).
- **Task states** (`TaskProgress`): ``New``, ``Pending``, ``Starting``, ``Suspended``,
  ``Service`` and ``Interrupted`` are *not yet running* — Supermicro's staged task stays ``New``
  until ``StartUpdate``, and that is no failure; ``Completed`` is done unless its ``TaskStatus``
  is ``Critical``; ``Exception``, ``Killed``, ``Cancelled`` are failures.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlsplit

from shared.redfish import normalise
from shared.redfish.resources import JsonObject, odata_id_of, text, value

TASKS_SEGMENT = "/TaskService/Tasks/"


class UpdateMethod(StrEnum):
    multipart_push = "multipart_push"
    simple_update = "simple_update"
    http_push = "http_push"


class Phase(StrEnum):
    pending = "pending"  # accepted or staged, not running yet
    running = "running"
    completed = "completed"
    failed = "failed"
    idle = "idle"  # HPE: nothing is being flashed (after a request: nothing was started)


class UnfillableParameter(ValueError):
    """``SimpleUpdate`` requires a parameter Racksmith has no value for."""


def _redfish_path(uri: str | None) -> str | None:
    if uri is None:
        return None
    path = urlsplit(uri).path if "://" in uri else uri
    return path if path.startswith("/redfish/") else None


@dataclass(frozen=True)
class UpdateCapabilities:
    multipart_push_uri: str | None
    http_push_uri: str | None
    simple_update: str | None
    simple_update_info: str | None
    transfer_protocols: tuple[str, ...]
    start_update: str | None
    max_image_bytes: int | None
    hpe_progress: bool

    @classmethod
    def parse(cls, service: JsonObject) -> UpdateCapabilities:
        actions = value(service, "Actions")
        actions = actions if isinstance(actions, Mapping) else {}
        simple = actions.get("#UpdateService.SimpleUpdate")
        simple = simple if isinstance(simple, Mapping) else {}
        start = actions.get("#UpdateService.StartUpdate")
        start = start if isinstance(start, Mapping) else {}
        protocols = simple.get("TransferProtocol@Redfish.AllowableValues")
        oem_state = value(service, "Oem", "Hpe", "State")
        return cls(
            multipart_push_uri=_redfish_path(text(service, "MultipartHttpPushUri")),
            http_push_uri=_redfish_path(text(service, "HttpPushUri")),
            simple_update=normalise.clean_text(simple.get("target")),
            simple_update_info=normalise.clean_text(simple.get("@Redfish.ActionInfo")),
            transfer_protocols=tuple(str(p) for p in protocols)
            if isinstance(protocols, list)
            else (),
            start_update=normalise.clean_text(start.get("target")),
            max_image_bytes=normalise.integer(value(service, "MaxImageSizeBytes")),
            hpe_progress=isinstance(oem_state, str),
        )

    def method(self, image_size: int | None = None) -> UpdateMethod | None:
        """The way to send an image of ``image_size`` bytes, or ``None`` if the BMC offers
        none (or only a push that refuses images that large)."""
        fits = (
            image_size is None or self.max_image_bytes is None or image_size <= self.max_image_bytes
        )
        if self.multipart_push_uri is not None and fits:
            return UpdateMethod.multipart_push
        if self.simple_update is not None:
            return UpdateMethod.simple_update
        if self.http_push_uri is not None and fits:
            return UpdateMethod.http_push
        return None


def simple_update_body(
    image_uri: str,
    capabilities: UpdateCapabilities,
    action_info: JsonObject | None = None,
    *,
    targets: Sequence[str] = (),
    component: str | None = None,
) -> dict[str, Any]:
    """The ``SimpleUpdate`` request for ``image_uri``, from what the BMC says it takes."""
    parameters: dict[str, JsonObject] = {}
    listed = value(action_info or {}, "Parameters")
    for parameter in listed if isinstance(listed, list) else []:
        if isinstance(parameter, Mapping) and isinstance(parameter.get("Name"), str):
            parameters[parameter["Name"]] = parameter
    body: dict[str, Any] = {"ImageURI": image_uri}
    scheme = urlsplit(image_uri).scheme.upper()
    protocol = parameters.get("TransferProtocol", {})
    allowed = protocol.get("AllowableValues") or capabilities.transfer_protocols
    if protocol.get("Required") is True:
        if scheme not in [str(a).upper() for a in allowed or [scheme]]:
            raise UnfillableParameter(
                f"TransferProtocol {scheme} is not among {', '.join(map(str, allowed))}"
            )
        body["TransferProtocol"] = scheme
    if targets and (not parameters or "Targets" in parameters):
        body["Targets"] = list(targets)
    update_component = parameters.get("UpdateComponent", {})
    choices = update_component.get("AllowableValues")
    if component is not None and isinstance(choices, list) and component.upper() in choices:
        body["UpdateComponent"] = component.upper()
    for name, parameter in parameters.items():
        if parameter.get("Required") is True and name not in body:
            raise UnfillableParameter(f"SimpleUpdate requires {name}")
    return body


def _message_task(body: Any) -> str | None:
    """A task path in any message's ``MessageArgs`` (Supermicro), searched through the body."""
    if isinstance(body, Mapping):
        for key, item in body.items():
            if key == "MessageArgs" and isinstance(item, list):
                for arg in item:
                    if isinstance(arg, str) and TASKS_SEGMENT in arg:
                        return arg.strip()
            found = _message_task(item)
            if found:
                return found
    elif isinstance(body, list):
        for item in body:
            found = _message_task(item)
            if found:
                return found
    return None


def task_reference(status: int, location: str | None, body: JsonObject | None) -> str | None:
    """Where the task an accepted update request started is: ``Location`` of a 202, the body
    when it is a Task, or a task path in a message's ``MessageArgs``; ``None``: no task (iLO)."""
    if status == 202 and location:
        return location
    if body:
        odata_type = body.get("@odata.type")
        if isinstance(odata_type, str) and ".Task" in odata_type:
            return odata_id_of(body)
        return _message_task(body)
    return None


_PENDING = frozenset({"new", "pending", "starting", "suspended", "service", "interrupted"})
_RUNNING = frozenset({"running", "stopping", "cancelling"})
_FAILED = frozenset({"exception", "killed", "cancelled"})


@dataclass(frozen=True)
class TaskProgress:
    state: str | None
    phase: Phase
    percent: int | None
    messages: tuple[tuple[str | None, str | None], ...]

    @classmethod
    def parse(cls, task: JsonObject) -> TaskProgress:
        state = text(task, "TaskState")
        lowered = (state or "").lower()
        status = (text(task, "TaskStatus") or "").lower()
        if lowered == "completed":
            phase = Phase.failed if status == "critical" else Phase.completed
        elif lowered in _FAILED:
            phase = Phase.failed
        elif lowered in _RUNNING:
            phase = Phase.running
        else:
            phase = Phase.pending  # New, Pending, Starting… and states a BMC invents
        listed = value(task, "Messages")
        messages = tuple(
            (text(m, "MessageId"), text(m, "Message"))
            for m in (listed if isinstance(listed, list) else [])
            if isinstance(m, Mapping)
        )
        return cls(state, phase, normalise.integer(value(task, "PercentComplete")), messages)

    @property
    def reason(self) -> str:
        """The BMC's own words for how it ended: the last message, with its MessageId."""
        for message_id, message in reversed(self.messages):
            if message or message_id:
                return f"{message or ''} ({message_id})" if message_id else str(message)
        return f"TaskState {self.state}"


_HPE = {
    "idle": Phase.idle,
    "uploading": Phase.running,
    "progressing": Phase.running,
    "verifying": Phase.running,
    "writing": Phase.running,
    "updating": Phase.running,
    "complete": Phase.completed,
    "completed": Phase.completed,
    "error": Phase.failed,
}


def hpe_update_state(service: JsonObject) -> tuple[Phase, int | None] | None:
    """iLO's update progress from the UpdateService (``Oem.Hpe.State``, ``FlashProgressPercent``);
    ``None`` for BMCs that do not report it there. An unknown state counts as running."""
    state = text(service, "Oem", "Hpe", "State")
    if state is None:
        return None
    percent = normalise.integer(value(service, "Oem", "Hpe", "FlashProgressPercent"))
    return _HPE.get(state.lower(), Phase.running), percent
