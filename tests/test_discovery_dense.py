"""Discovery of a dense BMC network while the scanner's machine is busy: every BMC is found.

A management network is mostly BMCs, so hundreds of TLS handshakes land on the scanner's event
loop at once; with the CPU taken by other work as well, its timers fire late. Tight timeouts make
the scanner's own backlog the only thing that could lose a BMC here, and it must not.
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from bmclab import Lab, LabConfig
from shared.core.settings import Settings
from shared.platform.runtime import Runtime
from tests.discovery_helpers import nodes_of_range, scan_to_completion, scanner
from tests.lab_net import LAB_NET

pytestmark = [pytest.mark.broker, pytest.mark.lab]

NETWORK = f"{LAB_NET}.60.0/24"
BMCS = 150


@pytest.fixture(scope="module")
async def dense_lab() -> AsyncIterator[Lab]:
    config = LabConfig(count=BMCS, network=NETWORK, latency="0", seed=23)
    async with Lab(config) as running:
        yield running


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """A thread burning CPU in the scanner's own process: it takes the interpreter from the
    event loop every switch interval for as long as the scan runs."""
    stop = threading.Event()

    def burn() -> None:
        n = 0
        while not stop.is_set():
            n = (n * 31 + 7) % 1_000_003

    burners = [threading.Thread(target=burn, daemon=True) for _ in range(1)]
    for burner in burners:
        burner.start()
    yield
    stop.set()
    for burner in burners:
        burner.join()


@pytest.fixture
async def tight_scanner(settings: Settings) -> AsyncIterator[Runtime]:
    tight = settings.model_copy(
        update={
            "scan_connect_timeout_s": 0.2,
            "scan_probe_timeout_s": 0.5,
            "scan_progress_interval_s": 0.5,
            # The whole network in one chunk: every probe of the run in flight at once.
            "scan_chunk_size": 512,
            "scan_concurrency": 2048,
            "scan_handshake_concurrency": 512,
        }
    )
    async with scanner(tight) as runtime:
        yield runtime


async def test_a_busy_scanner_finds_every_bmc_of_a_dense_network(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    dense_lab: Lab,
    tight_scanner: Runtime,
    busy_machine: None,
) -> None:
    created = await client.post(
        "/api/node_discovery/scan_range/",
        json={"name": "dense", "cidr": NETWORK, "ports": [8443]},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    done = await scan_to_completion(client, admin_headers, created.json()["id"], timeout=300)
    assert done["status"] == "ready", done
    assert done["nodes_found"] == BMCS
    assert done["addresses_unanswered"] == 0
    assert done["last_warning"] is None
    found = {n["ip"] for n in await nodes_of_range(client, admin_headers, created.json()["id"])}
    assert found == {entry.address for entry in dense_lab.manifest}
