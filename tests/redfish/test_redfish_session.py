"""Session behaviour: re-login after expiry, Basic fallback, links, paging and request caps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from redfish_helpers import PASSWORD, CountingSemaphore, expect, lab_config, open_session

from bmclab import Lab
from bmclab.bmc import Bmc
from shared.redfish import (
    AuthenticationFailed,
    ClientLimits,
    ProtocolError,
    RedfishPool,
    read_systems,
)
from tests.lab_net import LAB_NET

REEXPIRE, BASIC, LINKS, PAGED = range(4)
OFF_HOST = "https://198.51.100.7/redfish/v1/Systems/1"  # never contacted: refused before


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    async with Lab(lab_config(f"{LAB_NET}.172.0/24", count=4, flavours=("hpe",))) as running:
        yield running


@pytest.fixture(scope="module")
async def slow_lab() -> AsyncIterator[Lab]:
    # A fixed 20 ms per request keeps requests overlapping, so the caps are actually reached.
    async with Lab(lab_config(f"{LAB_NET}.173.0/24", count=2, latency="20")) as running:
        yield running


def edit(bmc: Bmc, path: str, body: dict[str, Any]) -> None:
    """Replace a resource of a running lab BMC (served bytes are refreshed)."""
    bmc.store.put(path, body)


def system_path(lab: Lab, index: int) -> str:
    return f"/redfish/v1/Systems/{lab.manifest[index].system_ids[0]}"


async def test_relogin_once_after_session_expiry(lab: Lab) -> None:
    bmc = lab.bmc(REEXPIRE)
    path = system_path(lab, REEXPIRE)
    async with open_session(RedfishPool(), bmc.url) as session:
        bmc.sessions.clear()  # the BMC forgot the session (idle timeout, BMC reset)
        assert (await session.get(path))["@odata.id"] == path
        assert bmc.total_logins == 2
        # Many requests failing at once share one new session.
        bmc.sessions.clear()
        bodies = await session.get_many([path, "/redfish/v1/Chassis", "/redfish/v1/Managers"])
        assert [b["@odata.id"] for b in bodies] == [
            path,
            "/redfish/v1/Chassis",
            "/redfish/v1/Managers",
        ]
        assert bmc.total_logins == 3
    assert (bmc.max_sessions, bmc.open_sessions) == (1, 0)


async def test_basic_auth_when_no_session_service(lab: Lab) -> None:
    bmc = lab.bmc(BASIC)
    root = bmc.store.snapshot("/redfish/v1")
    del root["Links"]["Sessions"]
    edit(bmc, "/redfish/v1", root)
    # Nothing answers at the default sessions path any more; like most BMCs, the lab then
    # says 401 to the anonymous POST rather than 404.
    bmc.sessions_path = "/redfish/v1/NoSessionService/Sessions"
    async with open_session(RedfishPool(), bmc.url) as session:
        systems = await read_systems(session)
        assert session.auth_mode == "basic"
    assert [s.id for s in systems] == list(lab.manifest[BASIC].system_ids)
    assert (bmc.total_logins, bmc.open_sessions) == (0, 0)
    wrong = "wrong-" + PASSWORD
    await expect(
        AuthenticationFailed,
        lambda: open_session(RedfishPool(), bmc.url, password=wrong).__aenter__(),
        wrong,
        match="GET /redfish/v1/Systems",
    )


async def test_links_are_resolved_on_the_bmc_only(lab: Lab) -> None:
    bmc = lab.bmc(LINKS)
    path = system_path(lab, LINKS)
    async with open_session(RedfishPool(), bmc.url) as session:
        plain = await session.get(path)
        # Trailing slash, fragment and the BMC's own absolute URL all name the same resource.
        for variant in (path + "/", path + "#/Status", bmc.url + path, path.lstrip("/")[11:]):
            assert await session.get(variant) == plain, variant
        error = await expect(ProtocolError, lambda: session.get(OFF_HOST), match="off the BMC")
        assert error.url == OFF_HOST
        edit(
            bmc,
            "/redfish/v1/Systems",
            {"@odata.id": "/redfish/v1/Systems", "Members": [{"@odata.id": OFF_HOST}]},
        )
        await expect(ProtocolError, lambda: read_systems(session), match="198.51.100.7")
    assert bmc.open_sessions == 0


async def test_members_paging_duplicates_and_get_many(lab: Lab) -> None:
    bmc = lab.bmc(PAGED)
    chassis, managers = "/redfish/v1/Chassis", "/redfish/v1/Managers"
    edit(
        bmc,
        "/redfish/v1/Paged",
        {
            "Members": [{"@odata.id": chassis}, {"@odata.id": managers + "/"}, "junk", {}],
            "Members@odata.nextLink": "/redfish/v1/Paged2",
        },
    )
    edit(
        bmc,
        "/redfish/v1/Paged2",
        {
            "Members": [{"@odata.id": chassis + "#/x"}, {"@odata.id": "/redfish/v1/Systems"}],
            "Members@odata.nextLink": "/redfish/v1/Paged",  # a loop ends paging, not the read
        },
    )
    async with open_session(RedfishPool(), bmc.url) as session:
        members = await session.members("/redfish/v1/Paged")
        assert members == [chassis, managers + "/", "/redfish/v1/Systems"]
        bodies = await session.get_many([chassis, managers, chassis])
        assert [b["@odata.id"] for b in bodies] == [chassis, managers, chassis]
        assert await session.members("/redfish/v1/Systems") == [system_path(lab, PAGED)]


async def test_per_bmc_cap(slow_lab: Lab) -> None:
    bmc = slow_lab.bmc(0)
    bmc.inflight = counter = CountingSemaphore(10)  # the lab itself would allow 10
    limits = ClientLimits(per_bmc=3)
    paths = [f"/redfish/v1/Systems/{slow_lab.manifest[0].system_ids[0]}?n={i}" for i in range(20)]
    async with open_session(RedfishPool(limits), bmc.url) as session:
        counter.peak = 0
        await asyncio.gather(*(session.get(p) for p in paths))
        assert counter.peak == limits.per_bmc
        counter.peak = 0
        await session.get_many(paths)
        assert counter.peak == limits.per_bmc
    assert bmc.max_sessions == 1


async def test_global_cap(slow_lab: Lab) -> None:
    shared = CountingSemaphore(20)
    for bmc in slow_lab.bmcs:
        bmc.inflight = shared  # one counter across both BMCs
    pool = RedfishPool(ClientLimits(per_bmc=4, total=2))
    paths = [f"/redfish/v1/Chassis?n={i}" for i in range(10)]

    async def hammer(url: str) -> None:
        async with open_session(pool, url) as session:
            await session.get_many(paths)

    shared.peak = 0
    await asyncio.gather(*(hammer(bmc.url) for bmc in slow_lab.bmcs))
    assert shared.peak == 2
