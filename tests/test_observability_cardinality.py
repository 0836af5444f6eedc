"""Label cardinality is bounded: a scan of 250 lab BMCs, and registering and inventorying dozens
of them, adds no series per address — the series after a small run and after the large one are
the same — and no label value anywhere is an address, an id or a path with ids. The same holds
for 1,000 BMCs that fail, each with a vendor string of its own: they cost a connection refused
each, so the size does not make the test slow."""

from __future__ import annotations

import asyncio
import ipaddress
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY, generate_latest

from bmclab import Lab, LabConfig
from shared.core.settings import Settings
from shared.observability import metrics
from shared.platform.natsserver import free_port
from shared.platform.runtime import Runtime
from shared.redfish import BmcUnreachable, ClientLimits, RedfishPool, TlsPolicy
from tests.discovery_helpers import create_profile, discover, scanner
from tests.lab_net import LAB_NET
from tests.observability_helpers import parse

NETWORK = f"{LAB_NET}.173"
LAB_PASSWORD = "Lab-Cardinality-Pa55"
HTTP_REQUESTS = "racksmith_http_requests_total"
FLEET = 250
FIRST = 10  # the small run
MORE = 30  # registered in the large one
# Labels whose values may hold digits, and how: HTTP status codes, classes and bucket bounds.
NUMERIC_LABELS = {"status": r"[1-5]\d\d", "le": r".*", "status_class": r"[1-5]xx"}
Series = frozenset[tuple[str, frozenset[tuple[str, str]]]]
# tests/test_messaging.py routes throwaway consumers (`test-<hex>`, `racksmith.cmd.t<hex>.ping`)
# through the same process: their series are the tests', not the product's.
THROWAWAY = re.compile(r"^test-[0-9a-f]+$|^racksmith\.cmd\.t[0-9a-f]+\.")


def series() -> Series:
    """Every racksmith_* series this process exposes (name and labels, not values)."""
    return frozenset(
        (s.name, frozenset(s.labels.items()))
        for s in parse(generate_latest(REGISTRY).decode())
        if s.name.startswith("racksmith_")
    )


@pytest.fixture(scope="module")
async def fleet() -> AsyncIterator[Lab]:
    config = LabConfig(count=FLEET, network=f"{NETWORK}.0/24", latency="0", password=LAB_PASSWORD)
    async with Lab(config) as lab:
        yield lab


@pytest.fixture(scope="module")
async def workers(settings: Settings) -> AsyncIterator[Runtime]:
    # The lab, the scanner and the API share this process's event loop: 240 probes progress in
    # lockstep, so a loaded machine needs generous timeouts or every probe times out together.
    patient = settings.model_copy(
        update={"scan_connect_timeout_s": 5.0, "scan_probe_timeout_s": 60.0}
    )
    async with scanner(patient, ("scanner", "registrar", "inventory")) as runtime:
        yield runtime


async def _register_and_inventory(
    client: httpx.AsyncClient, headers: dict[str, str], nodes: list[dict[str, Any]], profile: int
) -> None:
    response = await client.post(
        "/api/node/register/",
        json={"nodes": [n["id"] for n in nodes], "auth_profile": profile},
        params={"wait": 0},
        headers=headers,
    )
    assert response.status_code in (200, 202), response.text
    ids = {n["id"] for n in nodes}
    async with asyncio.timeout(120):
        while True:
            servers = (
                await client.get("/api/server/", params={"page_size": 1000}, headers=headers)
            ).json()["results"]
            mine = [s for s in servers if s["node"] in ids]
            if len(mine) == len(ids) and all(s["inventory_status"] == "collected" for s in mine):
                return
            await asyncio.sleep(0.3)


@pytest.mark.broker
@pytest.mark.lab
@pytest.mark.slow
async def test_a_large_fleet_adds_no_series(
    client: httpx.AsyncClient, admin_headers: dict[str, str], fleet: Lab, workers: Runtime
) -> None:
    addresses = [entry.address for entry in fleet.manifest]
    profile = await create_profile(client, admin_headers, [("root", LAB_PASSWORD)])

    small = await discover(
        client, admin_headers, "cardinality small", addresses[0], addresses[FIRST - 1]
    )
    assert small["nodes_found"] == FIRST
    nodes = (
        await client.get(f"/api/node/?scan_range={small['id']}", headers=admin_headers)
    ).json()["results"]
    await _register_and_inventory(client, admin_headers, nodes, profile)
    after_small = series()

    large = await discover(
        client, admin_headers, "cardinality large", addresses[FIRST], addresses[-1]
    )
    assert large["nodes_found"] == FLEET - FIRST, large
    nodes = (
        await client.get(
            f"/api/node/?scan_range={large['id']}&page_size={MORE}&page=1", headers=admin_headers
        )
    ).json()["results"]
    await _register_and_inventory(client, admin_headers, nodes, profile)
    after_large = series()

    # (The API's status code for a registration that does not wait depends on timing: 200 if it
    # was done at once, else 202. Status codes are bounded; the series may differ by one.)
    grown = {(n, labels) for n, labels in after_large - after_small if n != HTTP_REQUESTS}
    assert not grown, sorted(grown)[:20]
    probes = [
        s
        for s in parse(generate_latest(REGISTRY).decode())
        if s.name == "racksmith_scan_probes_total"
    ]
    assert sum(s.value for s in probes if s.labels["outcome"] == "bmc") >= FLEET

    _assert_no_address_nor_id(after_large, set(addresses), NETWORK)


def _assert_no_address_nor_id(found: Series, addresses: set[str], network: str) -> None:
    for name, labels in found:
        if any(THROWAWAY.search(value) for _, value in labels):
            continue
        for key, value in labels:
            assert value not in addresses and network not in value, (name, key, value)
            try:
                ipaddress.ip_address(value)
            except ValueError:
                pass
            else:
                raise AssertionError(f"{name}{{{key}={value!r}}} is an address")
            # No ids: digits only where a label is a number by design (paths are templates,
            # subjects carry no ids).
            if re.search(r"\d", value):
                assert re.fullmatch(NUMERIC_LABELS.get(key, "$^"), value), (name, key, value)


# Loopback addresses no other test uses (tests/lab_net.py gives each run its own second octet),
# with nothing listening: every connection is refused at once.
UNREACHABLE_OCTETS = range(174, 178)
UNREACHABLE_FLEET = 1000
VENDOR_STRINGS = ("Dell Inc.", "HPE", "Supermicro", "OpenBMC", None)


def _unreachable(index: int) -> str:
    return f"{LAB_NET}.{UNREACHABLE_OCTETS[index // 250]}.{index % 250 + 1}"


async def _fail_against(pool: RedfishPool, port: int, indexes: range) -> None:
    async def one(index: int) -> None:
        # Half the fleet with a vendor string of its own, as firmware builds report them.
        vendor = VENDOR_STRINGS[index % 5] if index % 2 else f"Acme Server {index} BMC"
        session = pool.session(
            f"https://{_unreachable(index)}:{port}", "root", "pw", TlsPolicy(), vendor=vendor
        )
        with pytest.raises(BmcUnreachable):
            async with session:
                pass

    await asyncio.gather(*(one(i) for i in indexes))


async def test_a_thousand_failing_bmcs_add_no_series() -> None:
    pool = RedfishPool(ClientLimits(connect_timeout=5.0, read_timeout=5.0))
    port = free_port()
    await _fail_against(pool, port, range(10))
    after_small = series()
    await _fail_against(pool, port, range(10, UNREACHABLE_FLEET))
    after_large = series()
    assert after_large - after_small == frozenset(), sorted(after_large - after_small)[:20]
    unreachable = [
        s
        for s in parse(generate_latest(REGISTRY).decode())
        if s.name == "racksmith_bmc_unreachable_total"
    ]
    assert sum(s.value for s in unreachable) >= UNREACHABLE_FLEET
    assert {s.labels["vendor"] for s in unreachable} <= set(metrics.VENDORS)
    addresses = {_unreachable(i) for i in range(UNREACHABLE_FLEET)}
    for octet in UNREACHABLE_OCTETS:
        _assert_no_address_nor_id(after_large, addresses, f"{LAB_NET}.{octet}.")
