"""High-level reads built on `RedfishSession`: what the registrar and inventory worker call."""

from __future__ import annotations

from shared.redfish.client import DEFAULT_SYSTEMS_PATH, RedfishSession
from shared.redfish.resources import ComputerSystem, ServiceRoot


async def read_systems(session: RedfishSession) -> list[ComputerSystem]:
    """Every ComputerSystem of the BMC, in collection order.

    Follows the root's ``Systems`` link and the collection's members; never assumes an Id
    (``1``, ``Self``, ``system``, ``System.Embedded.1`` and serial numbers all occur).
    """
    systems = ServiceRoot.parse(session.root).systems or DEFAULT_SYSTEMS_PATH
    bodies = await session.get_many(await session.members(systems))
    return [ComputerSystem.parse(body) for body in bodies]
