"""Firmware updates as each vendor's UpdateService performs them.

Every flavour accepts an image the way its vendor does and reports progress where its vendor
does:

* ``dell``: multipart push to ``MultipartHttpPushUri`` (one component per request: several
  ``Targets`` are a 400) or ``SimpleUpdate``; the task (``JID_…``) is in ``Location``.
* ``hpe``: ``SimpleUpdate`` pulling ``ImageURI``; no task: progress is the UpdateService's
  ``Oem.Hpe.State`` (``Idle``, ``Uploading``, ``Writing``, ``Complete``, ``Error``) and
  ``FlashProgressPercent``. A ``.fwpkg`` sent to ``SimpleUpdate`` is answered 200 and flashes
  nothing, as iLO 5 does.
* ``supermicro``: multipart push stages the image and answers 202 with the task URI only in a
  message's ``MessageArgs``; the task stays ``New`` until ``UpdateService.StartUpdate``. With the
  ``nolicence`` fault every update is a 403 (``SMC…OemLicenseNotPassed``).
* ``openbmc``: multipart push only; the 202 body is the task (``@odata.id``).
* recorded mockups: ``SimpleUpdate`` or push, the task in ``Location`` and the body.

The image must be a lab image (`build_image`, ``racksmith lab firmware-image``) for this BMC's
manufacturer and a component it has; ``SimpleUpdate`` really downloads ``ImageURI`` (HEAD, then
ranged GETs). A task runs for ``Behaviour.task_duration``. The new version takes effect only as
it would on a server: a BIOS image after the next host boot (the task completes once staged), a
BMC image after the BMC resets (it resets itself once the task completes, refusing connections
for ``Behaviour.bmc_reset_time``, and forgets its tasks), anything else at once.

Faults: ``update_stall`` (the task stops at 50 %), ``update_fail`` (it ends in ``Exception``),
``update_noop`` (it completes and changes nothing), ``update_unreachable`` (the BMC cannot fetch
``ImageURI``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import aiohttp

from bmclab.faults import FaultKind
from bmclab.outcome import Outcome
from bmclab.tree import JsonObject

if TYPE_CHECKING:
    from bmclab.bmc import Bmc

TASKS = "/redfish/v1/TaskService/Tasks"
SERVICE = "/redfish/v1/UpdateService"
START_UPDATE = SERVICE + "/Actions/UpdateService.StartUpdate"
MAGIC = b"RACKSMITH-LAB-FIRMWARE 1\n"
_HEADER_MAX = 4096
_FETCH_PIECE = 1 << 20
# Inventory entry names of the BIOS and of the BMC itself, across flavours and mockups.
_BIOS_NAMES = frozenset({"bios", "system rom", "host_bios", "contoso bios firmware"})
_BMC_NAMES = frozenset(
    {"bmc", "bmc_active", "integrated dell remote access controller", "contoso bmc firmware"}
)
_NOT_RUNNING = ("previous-", "available-", "backup", "redundant", "golden")


@dataclass(frozen=True)
class LabImage:
    manufacturer: str
    component: str
    version: str


def build_image(manufacturer: str, component: str, version: str, size: int = 65536) -> bytes:
    """A firmware image the lab accepts: a header naming what it is for, then filler bytes (a
    hash chain, so two images of one size differ by their header only)."""
    header = json.dumps(
        {"manufacturer": manufacturer, "component": component, "version": version},
        sort_keys=True,
    ).encode()
    start = MAGIC + header + b"\n"
    filler = bytearray()
    block = hashlib.sha256(start).digest()
    while len(start) + len(filler) < size:
        filler += block
        block = hashlib.sha256(block).digest()
    return (start + bytes(filler))[: max(size, len(start))]


def parse_image(data: bytes) -> LabImage | None:
    if not data.startswith(MAGIC):
        return None
    line = data[len(MAGIC) : len(MAGIC) + _HEADER_MAX].split(b"\n", 1)[0]
    try:
        fields = json.loads(line)
        return LabImage(
            str(fields["manufacturer"]), str(fields["component"]), str(fields["version"])
        )
    except (ValueError, KeyError, TypeError):
        return None


@dataclass
class UpdateState:
    """A BMC's update bookkeeping: staged versions waiting for a host boot or a BMC reset."""

    style: str = "generic"
    # inventory entry path → version applied at the next host boot / BMC reset
    after_boot: dict[str, str] = field(default_factory=dict)
    after_reset: dict[str, str] = field(default_factory=dict)
    # Supermicro: tasks staged by an upload, waiting for StartUpdate.
    staged: list[tuple[str, bytes]] = field(default_factory=list)
    resetting: bool = False
    images_fetched: int = 0
    bytes_fetched: int = 0


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _license_refused() -> Outcome:
    return Outcome(
        403,
        message="Not licensed to perform this request. The following licenses SFT-DCMS-SVC-KEY "
        "were needed",
        message_id="SMC.1.0.OemLicenseNotPassed",
        message_args=("SFT-DCMS-SVC-KEY",),
    )


def _new_task(bmc: Bmc, state: str = "New") -> tuple[str, JsonObject]:
    task_id = bmc.next_task_id()
    path = f"{TASKS}/{task_id}"
    body: JsonObject = {
        "@odata.id": path,
        "@odata.type": "#Task.v1_4_3.Task",
        "Id": task_id,
        "Name": "Firmware Update",
        "TaskState": state,
        "TaskStatus": "OK",
        "PercentComplete": 0,
        "StartTime": _now(),
        "Messages": [],
    }
    bmc.store.add_member(TASKS, path, body)
    return path, body


def _accepted(bmc: Bmc, path: str, body: JsonObject) -> Outcome:
    """The 202 answer, with the task where this vendor puts it."""
    style = bmc.updates.style
    if style == "openbmc":
        return Outcome(202, dict(body))
    if style == "supermicro":
        message = f"Please also check Task Resource {path} to see more information."
        return Outcome(
            202,
            {
                "Accepted": {
                    "code": "Base.v1_4_0.Accepted",
                    "Message": "Successfully Accepted Request. Please see the location header "
                    "and ExtendedInfo for more information.",
                    "@Message.ExtendedInfo": [
                        {
                            "MessageId": "SMC.1.0.OemSimpleupdateAcceptedMessage",
                            "Message": message,
                            "MessageArgs": [path],
                        }
                    ],
                }
            },
        )
    return Outcome(202, dict(body), {"Location": path})


def push(bmc: Bmc, filename: str, data: bytes, targets: list[Any]) -> Outcome:
    """A multipart (or plain) push of an image to the push URI."""
    state = bmc.updates
    if bmc.has(FaultKind.NOLICENCE):
        return _license_refused()
    if state.style == "hpe":
        return Outcome(400, message="Use SimpleUpdate", message_id="ActionNotSupported")
    if state.style == "dell" and len(targets) > 1:
        return Outcome(
            400,
            message="Only one component can be updated per request.",
            message_id="IDRAC.2.8.SUP0508",
        )
    if state.style == "supermicro":
        path, body = _new_task(bmc)
        state.staged.append((path, data))
        return _accepted(bmc, path, body)
    path, body = _new_task(bmc)
    bmc.spawn(_run(bmc, path, data))
    return _accepted(bmc, path, body)


def simple_update(bmc: Bmc, image_uri: str) -> Outcome:
    state = bmc.updates
    if bmc.has(FaultKind.NOLICENCE):
        return _license_refused()
    if state.style == "openbmc":
        return Outcome(
            405, message="SimpleUpdate is not supported", message_id="ActionNotSupported"
        )
    if state.style == "hpe":
        if image_uri.lower().endswith(".fwpkg"):
            return Outcome(200, _hpe_success())  # accepted, and nothing is flashed
        bmc.spawn(_run_hpe(bmc, image_uri))
        return Outcome(200, _hpe_success())
    path, body = _new_task(bmc)
    bmc.spawn(_run(bmc, path, None, image_uri))
    return _accepted(bmc, path, body)


def start_update(bmc: Bmc) -> Outcome:
    """Supermicro's StartUpdate: flash what the uploads staged."""
    state = bmc.updates
    if not state.staged:
        return Outcome(400, message="No image has been uploaded.", message_id="ActionNotSupported")
    staged, state.staged = state.staged, []
    for path, data in staged:
        bmc.spawn(_run(bmc, path, data))
    return Outcome(202, {"@odata.id": staged[-1][0]}, {"Location": staged[-1][0]})


def _hpe_success() -> JsonObject:
    return {
        "error": {
            "code": "iLO.0.10.ExtendedInfo",
            "message": "See @Message.ExtendedInfo for more information.",
            "@Message.ExtendedInfo": [{"MessageId": "iLO.2.14.Success"}],
        }
    }


async def fetch(bmc: Bmc, uri: str) -> bytes:
    """Download ``uri`` as a BMC does: HEAD for the size, then ranged GETs."""
    if bmc.has(FaultKind.UPDATE_UNREACHABLE):
        raise OSError("the image server cannot be reached from the BMC network")
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        async with http.head(uri) as head:
            head.raise_for_status()
            size = int(head.headers.get("Content-Length", "0"))
        data = bytearray()
        while len(data) < size or not size:
            end = len(data) + _FETCH_PIECE - 1
            async with http.get(uri, headers={"Range": f"bytes={len(data)}-{end}"}) as piece:
                piece.raise_for_status()
                chunk = await piece.read()
            if not chunk:
                break
            data += chunk
            if not size:
                break
    bmc.updates.images_fetched += 1
    bmc.updates.bytes_fetched += len(data)
    return bytes(data)


def _inventory(bmc: Bmc) -> list[str]:
    for name in ("FirmwareInventory", "SoftwareInventory"):
        collection = bmc.store.get(f"{SERVICE}/{name}")
        if collection is not None:
            return [
                m["@odata.id"]
                for m in collection.body.get("Members", [])
                if isinstance(m, dict) and isinstance(m.get("@odata.id"), str)
            ]
    return []


def component_entry(bmc: Bmc, component: str) -> str | None:
    """The running inventory entry an image's component names (BIOS, BMC, or an entry's name)."""
    wanted = component.casefold()
    for path in _inventory(bmc):
        body = bmc.store.body(path)
        name = str(body.get("Name", "")).casefold()
        entry_id = str(body.get("Id", "")).casefold()
        if any(word in entry_id or word in name for word in _NOT_RUNNING):
            continue
        if wanted == "bios" and (name in _BIOS_NAMES or entry_id == "bios"):
            return path
        if wanted == "bmc" and (name in _BMC_NAMES or name.startswith("ilo ") or entry_id == "bmc"):
            return path
        if wanted in (name, entry_id):
            return path
    return None


def _check(bmc: Bmc, image: LabImage | None) -> tuple[str | None, str]:
    """The entry the image updates, or None and why it is refused."""
    if image is None:
        return None, "The image is not a valid firmware package."
    manufacturer = bmc.store.body("/redfish/v1/").get("Vendor") or ""
    if image.manufacturer and image.manufacturer.casefold() not in str(manufacturer).casefold():
        return None, f"The package is for {image.manufacturer}, not this {manufacturer} system."
    entry = component_entry(bmc, image.component)
    if entry is None:
        return None, f"This system has no component {image.component}."
    return entry, ""


def _set_task(bmc: Bmc, path: str, **changes: Any) -> None:
    task = bmc.store.get(path)
    if task is None:
        return
    task.body.update(changes)
    task.changed()


def _message(message_id: str, text: str) -> JsonObject:
    return {"MessageId": message_id, "Message": text}


async def _run(bmc: Bmc, path: str, data: bytes | None, uri: str | None = None) -> None:
    """A task: fetch (pull) or take (push) the image, check it, progress, and stage or apply."""
    steps = 4
    tick = bmc.behaviour.task_duration / steps
    await asyncio.sleep(tick)
    _set_task(bmc, path, TaskState="Running", PercentComplete=10)
    if data is None and uri is not None:
        try:
            data = await fetch(bmc, uri)
        except (OSError, aiohttp.ClientError, TimeoutError) as exc:
            _fail(bmc, path, "Update.1.0.TransferFailed", f"Transfer of {uri} failed: {exc}.")
            return
    entry, reason = _check(bmc, parse_image(data or b""))
    if entry is None:
        _fail(bmc, path, "Update.1.0.InvalidImage", reason)
        return
    image = parse_image(data or b"")
    assert image is not None
    for step in range(2, steps):
        await asyncio.sleep(tick)
        if bmc.has(FaultKind.UPDATE_STALL) and step == 2:
            _set_task(bmc, path, PercentComplete=50)
            await asyncio.Event().wait()  # never finishes
        _set_task(bmc, path, PercentComplete=step * 100 // steps)
    await asyncio.sleep(tick)
    if bmc.has(FaultKind.UPDATE_FAIL):
        _fail(bmc, path, "Update.1.0.ApplyFailed", f"Applying the image to {entry} failed.")
        return
    message = _stage(bmc, entry, image)
    _set_task(
        bmc,
        path,
        TaskState="Completed",
        PercentComplete=100,
        EndTime=_now(),
        Messages=[_message("Update.1.1.UpdateSuccessful", message)],
    )
    if bmc.updates.after_reset and not bmc.has(FaultKind.UPDATE_NOOP):
        # A BMC that flashed itself restarts on its own.
        await asyncio.sleep(tick)
        await reset_bmc(bmc)


def _fail(bmc: Bmc, path: str, message_id: str, text: str) -> None:
    _set_task(
        bmc,
        path,
        TaskState="Exception",
        TaskStatus="Critical",
        EndTime=_now(),
        Messages=[_message(message_id, text)],
    )


def _stage(bmc: Bmc, entry: str, image: LabImage) -> str:
    """Record the new version where it takes effect; the task's final message."""
    if bmc.has(FaultKind.UPDATE_NOOP):
        return f"Update of {entry} succeeded."
    component = image.component.casefold()
    if component == "bios":
        bmc.updates.after_boot[entry] = image.version
        return f"Update of {entry} staged; it is applied at the next host reboot."
    if component == "bmc":
        bmc.updates.after_reset[entry] = image.version
        return f"Update of {entry} succeeded; the BMC restarts to apply it."
    _apply(bmc, entry, image.version)
    return f"Update of {entry} succeeded."


def _apply(bmc: Bmc, entry: str, version: str) -> None:
    resource = bmc.store.get(entry)
    if resource is not None:
        resource.body["Version"] = version
        resource.changed()


def host_booted(bmc: Bmc, system_path: str) -> None:
    """The host finished a boot: staged BIOS versions run now."""
    staged, bmc.updates.after_boot = bmc.updates.after_boot, {}
    for entry, version in staged.items():
        _apply(bmc, entry, version)
        system = bmc.store.get(system_path)
        if system is not None and "BiosVersion" in system.body:
            system.body["BiosVersion"] = version
            system.changed()


async def reset_bmc(bmc: Bmc) -> None:
    """The BMC restarts: connections are refused for a while, tasks are forgotten, staged BMC
    versions run afterwards."""
    state = bmc.updates
    if state.resetting or bmc.listener is None:
        return
    state.resetting = True
    try:
        await asyncio.sleep(0.05)  # the answer that asked for the reset goes out first
        await bmc.listener.close()
        await asyncio.sleep(bmc.behaviour.bmc_reset_time)
        staged, state.after_reset = state.after_reset, {}
        for entry, version in staged.items():
            _apply(bmc, entry, version)
            for manager in _managers(bmc):
                resource = bmc.store.get(manager)
                if resource is not None and "FirmwareVersion" in resource.body:
                    resource.body["FirmwareVersion"] = version
                    resource.changed()
        _forget_tasks(bmc)
        await bmc.listener.open()
    finally:
        state.resetting = False


def _managers(bmc: Bmc) -> list[str]:
    collection = bmc.store.get("/redfish/v1/Managers")
    members = collection.body.get("Members", []) if collection else []
    return [m["@odata.id"] for m in members if isinstance(m, dict) and "@odata.id" in m]


def _forget_tasks(bmc: Bmc) -> None:
    collection = bmc.store.get(TASKS)
    if collection is None:
        return
    for member in collection.body.get("Members", []):
        if isinstance(member, dict) and isinstance(member.get("@odata.id"), str):
            bmc.store.remove(member["@odata.id"])
    collection.body["Members"] = []
    collection.body["Members@odata.count"] = 0
    collection.changed()


def _hpe_state(bmc: Bmc, state: str, percent: int, result: str | None = None) -> None:
    service = bmc.store.get(SERVICE)
    if service is None:
        return
    hpe = service.body.setdefault("Oem", {}).setdefault("Hpe", {})
    hpe["State"] = state
    hpe["FlashProgressPercent"] = percent
    if result is not None:
        hpe["Result"] = {"MessageId": result}
    service.changed()


async def _run_hpe(bmc: Bmc, uri: str) -> None:
    """iLO: no task; Oem.Hpe.State on the UpdateService says where the flash is."""
    tick = bmc.behaviour.task_duration / 4
    _hpe_state(bmc, "Uploading", 0)
    try:
        data = await fetch(bmc, uri)
    except (OSError, aiohttp.ClientError, TimeoutError):
        _hpe_state(bmc, "Error", 0, "iLO.2.14.UpdateFailed")
        return
    image = parse_image(data)
    entry, _ = _check(bmc, image)
    if entry is None or image is None:
        _hpe_state(bmc, "Error", 0, "iLO.2.14.InvalidFirmwareImage")
        return
    await asyncio.sleep(tick)
    _hpe_state(bmc, "Writing", 25)
    await asyncio.sleep(tick)
    if bmc.has(FaultKind.UPDATE_STALL):
        _hpe_state(bmc, "Writing", 50)
        await asyncio.Event().wait()
    _hpe_state(bmc, "Writing", 75)
    await asyncio.sleep(tick)
    if bmc.has(FaultKind.UPDATE_FAIL):
        _hpe_state(bmc, "Error", 75, "iLO.2.14.UpdateFailed")
        return
    _stage(bmc, entry, image)
    _hpe_state(bmc, "Complete", 100, "iLO.2.14.UpdateSuccessful")
    if bmc.updates.after_reset and not bmc.has(FaultKind.UPDATE_NOOP):
        await asyncio.sleep(tick)
        await reset_bmc(bmc)
