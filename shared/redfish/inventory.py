"""A system's hardware and firmware inventory, read by following the BMC's own links.

What the inventory worker calls after registration::

    async with pool.session(url, user, password, tls) as bmc:
        for system in await read_systems(bmc):
            inventory = await read_inventory(bmc, system)

How it walks the tree:

* Only links are followed, never guessed Ids: the system's ``Processors``, ``Memory``,
  ``EthernetInterfaces`` and ``Storage`` (falling back to ``SimpleStorage`` when the system has
  no Storage, or an empty or missing one, and then to HPE's OEM ``SmartStorage`` array
  controllers, the only view of the disks on some iLO 5 firmware), the drive bays of the
  system's chassis (``Chassis/*/Drives``: drives no storage resource lists), and the service
  root's ``UpdateService`` → ``FirmwareInventory`` (falling back to ``SoftwareInventory``).
* A volume two Storage resources both list (one RAID set seen by two controllers) is listed
  once, under the first; a chassis drive a storage resource already lists (same link or serial
  number), or an empty bay, is not listed again.
* Where the service root advertises ``$expand=.`` (``ProtocolFeaturesSupported.ExpandQuery``,
  as iDRAC 9, iLO 5/6 and OpenBMC do), a collection and all its members are one request;
  elsewhere, or when a BMC leaves a member unexpanded, the collection is walked member by member.
* Everything that does not depend on an earlier answer is asked for at once: the branches
  (processors, memory, NICs, storage, firmware) run concurrently, all members of a collection
  are fetched together, and each Storage's drives, volumes and controllers together. A server
  costs about tree depth times latency (four rounds), not the number of GETs times latency;
  the session's per-BMC cap bounds how many requests are in flight.
* Recorded trees have broken links: a member or collection that answers 404/410, or 200 with a
  Redfish error body, is skipped and leaves nothing in the inventory. Every other error (busy,
  unreachable, refused credentials, malformed JSON) propagates, and the requests still running
  are cancelled, so the caller can keep the previous inventory.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from shared.core.log import get_logger
from shared.redfish.client import RedfishSession
from shared.redfish.errors import ResourceNotFound
from shared.redfish.resources import (
    ComputerSystem,
    Drive,
    EthernetInterface,
    FirmwareComponent,
    JsonObject,
    MemoryModule,
    Processor,
    ServiceRoot,
    Storage,
    StorageController,
    UpdateService,
    Volume,
    link,
    links,
    odata_id_of,
    value,
)

log = get_logger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Inventory:
    """What one ComputerSystem is made of, as its BMC describes it.

    Collections keep the BMC's order. ``duplicate_macs`` holds every MAC address that more than
    one of ``ethernet_interfaces`` reports (a VLAN on its parent NIC, or a BMC bug); those
    interfaces are all kept.
    """

    system: ComputerSystem
    processors: tuple[Processor, ...]
    memory: tuple[MemoryModule, ...]
    ethernet_interfaces: tuple[EthernetInterface, ...]
    storage: tuple[Storage, ...]
    firmware: tuple[FirmwareComponent, ...]
    duplicate_macs: frozenset[str]


async def read_inventory(session: RedfishSession, system: ComputerSystem) -> Inventory:
    """The inventory of ``system`` (from `read_systems`) on the BMC of ``session``.

    Raises the session's errors (`BmcBusy`, `BmcUnreachable`, `AuthenticationFailed`,
    `ProtocolError`) except `ResourceNotFound`, which only ever drops the missing resource.
    """
    processors = _spawn(_collection(session, system.processors, Processor.parse))
    memory = _spawn(_collection(session, system.memory, MemoryModule.parse))
    nics = _spawn(_collection(session, system.ethernet_interfaces, EthernetInterface.parse))
    storage = _spawn(_storage(session, system))
    firmware = _spawn(_firmware(session))
    await _join(processors, memory, nics, storage, firmware)
    return Inventory(
        system=system,
        processors=processors.result(),
        memory=memory.result(),
        ethernet_interfaces=nics.result(),
        storage=storage.result(),
        firmware=firmware.result(),
        duplicate_macs=duplicate_macs(nics.result()),
    )


def duplicate_macs(interfaces: Iterable[EthernetInterface]) -> frozenset[str]:
    """The MAC addresses reported by more than one interface."""
    counts = Counter(nic.mac_address for nic in interfaces if nic.mac_address is not None)
    return frozenset(mac for mac, count in counts.items() if count > 1)


# -- branches --------------------------------------------------------------------------------


async def _storage(session: RedfishSession, system: ComputerSystem) -> tuple[Storage, ...]:
    subsystems = _spawn(_storage_subsystems(session, system))
    bays = _spawn(_chassis_drives(session, system))
    await _join(subsystems, bays)
    storages = _volumes_once(subsystems.result())
    listed = {d.odata_id for s in storages for d in s.drives}
    serials = {d.serial_number for s in storages for d in s.drives if d.serial_number}
    for collection, drives in bays.result():
        loose = tuple(
            d
            for d in drives
            if d.odata_id not in listed and d.serial_number not in serials and d.state != "Absent"
        )
        if loose:
            storages.append(
                Storage(
                    odata_id=collection,
                    id=None,
                    name=f"Drive bays of {collection.removesuffix('/Drives')}",
                    controllers=(),
                    drives=loose,
                    volumes=(),
                    source="Chassis",
                )
            )
    return tuple(storages)


async def _storage_subsystems(session: RedfishSession, system: ComputerSystem) -> list[Storage]:
    bodies = await _members(session, system.storage)
    if bodies:
        return await _gather(_storage_subsystem(session, body) for body in bodies)
    simple = await _members(session, system.simple_storage)
    if simple:
        return [Storage.parse_simple_storage(body) for body in simple]
    return await _smart_storage(session, system)


async def _smart_storage(session: RedfishSession, system: ComputerSystem) -> list[Storage]:
    """HPE's OEM view: one entry per Smart Array controller, its physical and logical drives."""
    root = await _fetch(session, system.smart_storage) if system.smart_storage else None
    if root is None:
        return []
    arrays = await _members(session, link(root, "Links", "ArrayControllers"))
    return await _gather(_smart_array(session, body) for body in arrays)


async def _smart_array(session: RedfishSession, body: JsonObject) -> Storage:
    drives = _spawn(_members(session, link(body, "Links", "PhysicalDrives")))
    volumes = _spawn(_members(session, link(body, "Links", "LogicalDrives")))
    await _join(drives, volumes)
    return Storage(
        **Storage.common(body),
        controllers=(StorageController.parse_smart_storage(body),),
        drives=tuple(Drive.parse_smart_storage(d) for d in drives.result()),
        volumes=tuple(Volume.parse_smart_storage(v) for v in volumes.result()),
        source="SmartStorage",
    )


async def _chassis_drives(
    session: RedfishSession, system: ComputerSystem
) -> list[tuple[str, tuple[Drive, ...]]]:
    """The drives in the bays of the system's chassis: those it links, those inside them
    (``ContainedBy``), and those that name it among their ``ComputerSystems``."""
    own = set(system.chassis)
    related = [
        body
        for body in await _members(session, ServiceRoot.parse(session.root).chassis)
        if odata_id_of(body) in own
        or link(body, "Links", "ContainedBy") in own
        or system.odata_id in links(body, "Links", "ComputerSystems")
    ]
    collections = [path for body in related if (path := link(body, "Drives")) is not None]
    found = await _gather(_members(session, path) for path in collections)
    return [
        (path, tuple(Drive.parse(body) for body in bodies))
        for path, bodies in zip(collections, found, strict=True)
    ]


def _volumes_once(storages: list[Storage]) -> list[Storage]:
    """A volume listed by two Storage resources stays with the first only."""
    seen: set[str] = set()
    result = []
    for storage in storages:
        volumes = tuple(v for v in storage.volumes if v.odata_id not in seen)
        seen.update(v.odata_id for v in storage.volumes)
        result.append(storage if volumes == storage.volumes else replace(storage, volumes=volumes))
    return result


async def _storage_subsystem(session: RedfishSession, body: JsonObject) -> Storage:
    """One Storage with its drives, volumes and controllers (collection, else inline)."""
    drives = _spawn(_fetch_all(session, links(body, "Drives")))
    volumes = _spawn(_collection(session, link(body, "Volumes"), Volume.parse))
    controllers = _spawn(_collection(session, link(body, "Controllers"), StorageController.parse))
    await _join(drives, volumes, controllers)
    storage = Storage.parse(body)
    return replace(
        storage,
        drives=tuple(Drive.parse(drive) for drive in drives.result()),
        volumes=volumes.result(),
        controllers=controllers.result() or storage.controllers,
    )


async def _firmware(session: RedfishSession) -> tuple[FirmwareComponent, ...]:
    service_link = ServiceRoot.parse(session.root).update_service
    body = await _fetch(session, service_link) if service_link is not None else None
    if body is None:
        return ()
    service = UpdateService.parse(body)
    for inventory in (service.firmware_inventory, service.software_inventory):
        bodies = await _member_bodies(session, inventory)
        if bodies is not None:
            return tuple(FirmwareComponent.parse(item) for item in bodies)
    return ()


# -- fetching --------------------------------------------------------------------------------


async def _collection(
    session: RedfishSession, collection: str | None, parse: Callable[[JsonObject], T]
) -> tuple[T, ...]:
    return tuple(parse(body) for body in await _members(session, collection))


async def _members(session: RedfishSession, collection: str | None) -> list[JsonObject]:
    """The member bodies of ``collection``; none when it is not linked or missing."""
    return await _member_bodies(session, collection) or []


async def _member_bodies(
    session: RedfishSession, collection: str | None
) -> list[JsonObject] | None:
    """The member bodies of ``collection``, or ``None`` when it is not linked or missing.

    One request where the BMC expands the collection (``$expand=.``), else the collection and
    then its members concurrently.
    """
    if collection is None:
        return None
    try:
        expanded = await session.expanded_members(collection)
    except ResourceNotFound as exc:
        log.info("redfish.inventory_missing", bmc=session.label, url=exc.url)
        return None
    if expanded is not None:
        return list[JsonObject](expanded)
    paths = await _member_paths(session, collection)
    return None if paths is None else await _fetch_all(session, paths)


async def _member_paths(session: RedfishSession, collection: str | None) -> list[str] | None:
    """The member paths of ``collection``, or ``None`` when it is not linked or missing."""
    if collection is None:
        return None
    try:
        return await session.members(collection)
    except ResourceNotFound as exc:
        log.info("redfish.inventory_missing", bmc=session.label, url=exc.url)
        return None


async def _fetch_all(session: RedfishSession, paths: Iterable[str]) -> list[JsonObject]:
    """The bodies at ``paths``, fetched concurrently, in order, missing ones left out."""
    bodies = await _gather(_fetch(session, path) for path in dict.fromkeys(paths))
    return [body for body in bodies if body is not None]


async def _fetch(session: RedfishSession, path: str) -> JsonObject | None:
    """The body at ``path``, or ``None`` if the BMC says (404/410 or an error body) it is gone."""
    try:
        body = await session.get(path)
    except ResourceNotFound as exc:
        log.info("redfish.inventory_missing", bmc=session.label, url=exc.url)
        return None
    if isinstance(value(body, "error"), Mapping) and "@odata.id" not in body:
        # Recorded mockups (Intel) captured the BMC's 404 body as a 200 response.
        log.info("redfish.inventory_error_body", bmc=session.label, path=path)
        return None
    return body


# -- concurrency -----------------------------------------------------------------------------


def _spawn(awaitable: Awaitable[T]) -> asyncio.Future[T]:
    return asyncio.ensure_future(awaitable)


async def _gather(awaitables: Iterable[Awaitable[T]]) -> list[T]:
    """Run concurrently; results in order. See `_join` for errors."""
    tasks = [_spawn(awaitable) for awaitable in awaitables]
    await _join(*tasks)
    return [task.result() for task in tasks]


async def _join(*tasks: asyncio.Future[Any]) -> None:
    """Wait for all ``tasks``; on the first error (or cancellation) cancel the rest and raise.

    Unlike bare `asyncio.gather`, no request outlives a failed inventory (the caller is about
    to close the session), and the error raised is the BMC's, not an exception group.
    """
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
