"""Authentication, sessions, counters and the in-flight limit."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from bmclab_helpers import AUTH, client

from bmclab import Lab, LabConfig
from tests.lab_net import LAB_NET

SESSIONS = "/redfish/v1/SessionService/Sessions"
CREDS = {"UserName": "root", "Password": "calvin"}


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    config = LabConfig(count=4, network=f"{LAB_NET}.202.0/24", latency="0", session_timeout=1.5)
    async with Lab(config) as running:
        yield running


async def test_public_and_protected_resources(lab: Lab) -> None:
    url = lab.manifest[0].url
    async with client(lab) as http:
        for path in ("/redfish", "/redfish/v1", "/redfish/v1/", "/redfish/v1/odata"):
            async with http.get(url + path) as resp:
                assert resp.status == 200, path
        async with http.get(url + "/redfish/v1/Systems") as resp:
            assert resp.status == 401
            assert "error" in await resp.json()
        async with http.get(url + "/redfish/v1/Systems", headers=AUTH) as resp:
            assert resp.status == 200
        bad = {"Authorization": "Basic cm9vdDp3cm9uZw=="}  # root:wrong
        async with http.get(url + "/redfish/v1/Systems", headers=bad) as resp:
            assert resp.status == 401


async def test_login_logout_and_counters(lab: Lab) -> None:
    bmc = lab.bmc(lab.manifest[1].address)
    url = bmc.url
    async with client(lab) as http:
        async with http.post(url + SESSIONS, json={"UserName": "root", "Password": "x"}) as resp:
            assert resp.status == 401
            assert "error" in await resp.json()
        assert bmc.failed_logins == 1
        async with http.post(url + SESSIONS, json=CREDS) as resp:
            assert resp.status == 201
            token, location = resp.headers["X-Auth-Token"], resp.headers["Location"]
        assert location.startswith(SESSIONS + "/")
        assert bmc.open_sessions == 1 and bmc.total_logins == 1
        async with http.get(url + "/redfish/v1/Systems", headers={"X-Auth-Token": token}) as r:
            assert r.status == 200
        async with http.get(url + SESSIONS, headers={"X-Auth-Token": token}) as resp:
            assert (await resp.json())["Members"] == [{"@odata.id": location}]
        async with http.delete(url + location, headers={"X-Auth-Token": token}) as resp:
            assert resp.status == 204
        assert bmc.open_sessions == 0
        async with http.get(url + "/redfish/v1/Systems", headers={"X-Auth-Token": token}) as r:
            assert r.status == 401
    assert bmc.requests_served >= 6


async def test_session_limit_then_expiry(lab: Lab) -> None:
    bmc = lab.bmc(2)
    async with client(lab) as http:
        statuses = []
        for _ in range(9):
            async with http.post(bmc.url + SESSIONS, json=CREDS) as resp:
                statuses.append(resp.status)
        assert statuses == [201] * 8 + [503]
        assert bmc.open_sessions == 8 and bmc.max_sessions == 8
        # Idle sessions expire (timeout 1.5 s in this lab) and free their slots.
        await asyncio.sleep(1.7)
        assert bmc.open_sessions == 0
        async with http.post(bmc.url + SESSIONS, json=CREDS) as resp:
            assert resp.status == 201
        assert bmc.max_sessions == 8 and bmc.total_logins == 9


async def test_inflight_limit_queues_requests(lab: Lab) -> None:
    config = LabConfig(
        count=1, network=f"{LAB_NET}.212.0/24", latency="100", inflight_limit=2, queue_timeout=0.15
    )
    async with Lab(config) as small, client(small) as http:
        url = small.manifest[0].url + "/redfish/v1/"

        async def get() -> int:
            async with http.get(url) as resp:
                return resp.status

        statuses = await asyncio.gather(*(get() for _ in range(8)))
        # Two run at once; those that cannot start within the queue timeout get 503.
        assert statuses.count(200) >= 2
        assert 503 in statuses
