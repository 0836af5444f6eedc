"""Each fault kind behaves as documented."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from bmclab_helpers import AUTH, client, walk

from bmclab import Lab, LabConfig
from bmclab.faults import Fault, FaultKind, assign_faults
from tests.lab_net import LAB_NET

FAULTS = (
    "badcreds@0,hang@1,drip:0.005@2,busy@3,error500@4,malformed@5,nonredfish@6,"
    "tlsfail@7,reset@8,oversized@9,redirect@10,flap:0.3@11,busy:0.5@12"
)
SHORT = aiohttp.ClientTimeout(total=0.5)


@pytest.fixture(scope="module")
async def lab() -> AsyncIterator[Lab]:
    config = LabConfig(count=14, network=f"{LAB_NET}.204.0/24", latency="0", faults=FAULTS)
    async with Lab(config) as running:
        yield running


@pytest.fixture
async def http(lab: Lab) -> AsyncIterator[aiohttp.ClientSession]:
    async with client(lab, headers=AUTH) as session:
        yield session


async def _outcome(http: aiohttp.ClientSession, url: str) -> str:
    """Status code as text, or the class of failure."""
    try:
        async with http.get(url, timeout=SHORT, allow_redirects=False) as resp:
            await resp.read()
            return str(resp.status)
    except TimeoutError:
        return "timeout"
    except aiohttp.ClientSSLError:
        return "tls"
    except aiohttp.ClientError as exc:
        return type(exc).__name__


def test_manifest_records_faults(lab: Lab) -> None:
    faults = [e.fault for e in lab.manifest]
    assert faults[0] == "badcreds" and faults[2] == "drip:0.005" and faults[13] is None
    assert [e.credentials_ok for e in lab.manifest].count(False) == 1


async def test_badcreds(lab: Lab, http: aiohttp.ClientSession) -> None:
    url = lab.manifest[0].url
    assert await _outcome(http, url + "/redfish/v1/") == "200"
    assert await _outcome(http, url + "/redfish/v1/Systems") == "401"
    creds = {"UserName": "root", "Password": "calvin"}
    async with http.post(url + "/redfish/v1/SessionService/Sessions", json=creds) as resp:
        assert resp.status == 401


async def test_hang_accepts_but_never_answers(lab: Lab, http: aiohttp.ClientSession) -> None:
    host, port = lab.manifest[1].address, lab.manifest[1].port
    _reader, writer = await asyncio.open_connection(host, port)  # TCP is accepted
    writer.close()
    assert await _outcome(http, lab.manifest[1].url + "/redfish/v1/") == "timeout"


async def test_drip_is_slow_but_correct(lab: Lab, http: aiohttp.ClientSession) -> None:
    url = lab.manifest[2].url
    async with http.get(url + "/redfish") as resp:
        assert resp.status == 200
        first = await resp.content.read(1)
        assert len(first) == 1  # bytes arrive one at a time
        assert first + await resp.content.read() == b'{\n  "v1": "/redfish/v1/"\n}'
    assert await _outcome(http, url + "/redfish/v1/Systems") == "timeout"


async def test_busy_and_busy_then_recover(lab: Lab, http: aiohttp.ClientSession) -> None:
    async with http.get(lab.manifest[3].url + "/redfish/v1/") as resp:
        assert resp.status == 503 and "Retry-After" in resp.headers
    lab.bmc(12).set_fault("busy:0.5")  # restart the clock; earlier tests took time
    url = lab.manifest[12].url + "/redfish/v1/Systems"
    outcomes = []
    for _ in range(100):
        outcomes.append(await _outcome(http, url))
        if outcomes[-1] == "200":
            break
        await asyncio.sleep(0.05)
    assert outcomes[0] == "503" and outcomes[-1] == "200"
    assert lab.bmc(12).fault is None


async def test_error500_breaks_some_resources(lab: Lab, http: aiohttp.ClientSession) -> None:
    tree = await walk(http, lab.manifest[4].url)
    statuses = {status for status, _ in tree.values()}
    assert tree["/redfish/v1"][0] == 200 and statuses == {200, 500}


async def test_malformed_json(lab: Lab, http: aiohttp.ClientSession) -> None:
    async with http.get(lab.manifest[5].url + "/redfish/v1/") as resp:
        assert resp.status == 200
        with pytest.raises(ValueError):
            await resp.json()


async def test_nonredfish(lab: Lab, http: aiohttp.ClientSession) -> None:
    url = lab.manifest[6].url
    async with http.get(url + "/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
    async with http.get(url + "/redfish/v1/") as resp:
        assert resp.status == 404 and resp.content_type == "text/html"


async def test_tlsfail_and_reset(lab: Lab, http: aiohttp.ClientSession) -> None:
    assert await _outcome(http, lab.manifest[7].url + "/redfish/v1/") == "tls"
    outcome = await _outcome(http, lab.manifest[8].url + "/redfish/v1/")
    assert outcome in ("ClientOSError", "ServerDisconnectedError", "ClientConnectorError")


async def test_oversized(lab: Lab, http: aiohttp.ClientSession) -> None:
    async with http.get(lab.manifest[9].url + "/redfish/v1/") as resp:
        assert resp.status == 200
        assert (resp.content_length or 0) >= 1 << 30
        chunk = await resp.content.readexactly(1 << 20)
        assert len(chunk) == 1 << 20
        resp.close()


async def test_redirect_to_other_host(lab: Lab, http: aiohttp.ClientSession) -> None:
    async with http.get(lab.manifest[10].url + "/redfish/v1/", allow_redirects=False) as resp:
        assert resp.status == 302
        assert lab.manifest[10].address not in resp.headers["Location"]


async def test_flap_comes_and_goes(lab: Lab, http: aiohttp.ClientSession) -> None:
    seen: set[str] = set()
    for _ in range(60):
        seen.add(await _outcome(http, lab.manifest[11].url + "/redfish/v1/"))
        if "200" in seen and len(seen) > 1:
            break
        await asyncio.sleep(0.05)
    assert "200" in seen and seen - {"200"}


async def test_set_and_clear_fault_at_runtime(lab: Lab, http: aiohttp.ClientSession) -> None:
    bmc = lab.bmc(13)
    url = bmc.url + "/redfish/v1/"
    assert await _outcome(http, url) == "200"
    bmc.set_fault("tlsfail")
    assert await _outcome(http, url) in ("tls", "ServerDisconnectedError", "ClientOSError")
    assert await _outcome(http, url) == "tls"
    bmc.set_fault(Fault(FaultKind.BUSY))
    assert await _outcome(http, url) == "503"
    bmc.clear_fault()
    assert await _outcome(http, url) == "200"


def test_fraction_assignment_is_deterministic() -> None:
    addresses = [f"127.0.9.{i}" for i in range(1, 101)]
    first = assign_faults("hang=0.05,busy:10=0.1,tlsfail@127.0.9.1", addresses, seed=3)
    assert first == assign_faults("hang=0.05,busy:10=0.1,tlsfail@127.0.9.1", addresses, seed=3)
    assert first != assign_faults("hang=0.05,busy:10=0.1,tlsfail@127.0.9.1", addresses, seed=4)
    kinds = [f.kind for f in first if f is not None]
    assert kinds.count(FaultKind.HANG) == 5 and kinds.count(FaultKind.BUSY) == 10
    assert first[0] == Fault(FaultKind.TLSFAIL)
    with pytest.raises(ValueError):
        assign_faults("explode=0.5", addresses, seed=1)
