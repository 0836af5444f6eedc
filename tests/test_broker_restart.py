"""nats-server restarted (same port, same store dir) in the middle of a scan and of a bulk
registration: no command is lost, no work is done twice, the API and the workers reconnect, and
``/readyz`` says 503 while the broker is away and 200 once it is back.

The platform here has a database of its own (a SQLite file): every process sweeps the outbox of
its database, and the suite's shared runtime, on another broker, would otherwise relay this
test's events there while its own broker is down."""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from bmclab import Lab, LabConfig
from services.api.app import create_app
from services.workers import attach
from shared.platform import migrate
from shared.platform.bootstrap import create_user, ensure_defaults
from shared.platform.natsserver import EmbeddedNatsServer, port_is_free
from shared.platform.runtime import Runtime
from tests.conftest import bearer, make_settings, obtain_tokens
from tests.discovery_helpers import create_profile, events
from tests.lab_net import LAB_NET

pytestmark = [pytest.mark.broker, pytest.mark.lab, pytest.mark.slow]

COUNT = 12
NETWORK = f"{LAB_NET}.192"


def _port_no_one_else_takes() -> int:
    """A free port below the kernel's ephemeral range: while our broker is down, a port the
    kernel hands out (`free_port`, any other process's client socket) could go to someone else —
    another test run's nats-server — and our clients would reconnect to that one."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    start = 20000 + 97 * int(os.environ.get("RACKSMITH_TEST_LOOPBACK_OCTET", "0"))
    for port in range(start, min(start + 500, low)):
        if port_is_free(port):
            return port
    raise AssertionError("no free port below the ephemeral range")


class Broker:
    """A nats-server that can be stopped and started again on its port and store dir (its
    users' passwords are kept there too, so clients reconnect with the same credentials)."""

    def __init__(self, data_dir: Path) -> None:
        self.server = EmbeddedNatsServer(data_dir, port=_port_no_one_else_takes())

    @property
    def url(self) -> str:
        """The suite's platform user, as every in-process component connects."""
        return self.server.client_url()

    async def start(self) -> None:
        async with asyncio.timeout(30):
            while True:  # the port may linger for a moment after a stop
                try:
                    await self.server.start()
                    return
                except Exception:
                    await asyncio.sleep(0.2)

    async def stop(self) -> None:
        await self.server.stop()


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[Broker]:
    broker = Broker(tmp_path / "nats")
    await broker.start()
    yield broker
    await broker.stop()


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def _outage(
    broker: Broker, api: httpx.AsyncClient, still_working: Callable[[], Awaitable[bool]]
) -> None:
    """Stop the broker mid-work, see the API say so, start it again, see the API recover."""
    await broker.stop()
    assert await still_working(), "the work ended before the outage: it proves nothing"

    async def unready() -> bool:
        response = await api.get("/readyz")
        return response.status_code == 503 and response.json()["checks"]["broker"] is False

    await _until(unready, 10, "/readyz to report the outage")
    await asyncio.sleep(1.0)  # down long enough for in-flight acks and publishes to fail
    await broker.start()

    async def ready() -> bool:
        return (await api.get("/readyz")).status_code == 200

    await _until(ready, 30, "/readyz to recover")


async def test_a_broker_restart_mid_scan_and_mid_registration_loses_and_repeats_nothing(
    broker: Broker, tmp_path: Path
) -> None:
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'racksmith.db'}"
    settings = make_settings(tmp_path, database_url, broker.url, scan_chunk_size=2)
    api_runtime = Runtime(settings, broker.url)
    await migrate.upgrade(api_runtime.db.engine)
    await ensure_defaults(api_runtime.db)
    await create_user(api_runtime.db, "admin", "admin-password-1", superuser=True)
    workers = Runtime(settings, broker.url)
    await api_runtime.connect()
    await workers.connect()
    attach(workers, ["scanner", "registrar", "inventory"])
    await workers.start_consuming()
    transport = httpx.ASGITransport(app=create_app(api_runtime))
    config = LabConfig(count=COUNT, network=f"{NETWORK}.0/24", latency="1000", password="calvin")
    try:
        async with (
            Lab(config),
            httpx.AsyncClient(transport=transport, base_url="http://api") as api,
        ):
            admin_headers = bearer(
                (await obtain_tokens(api, "admin", "admin-password-1"))["access"]
            )
            api.headers.update(admin_headers)
            # A scan in chunks of two addresses; the broker goes away as soon as it started.
            scan = (
                await api.post(
                    "/api/node_discovery/scan_range/",
                    json={
                        "name": f"restart {tmp_path.name}",
                        "ip_from": f"{NETWORK}.1",
                        "ip_to": f"{NETWORK}.{COUNT}",
                        "ports": [config.port],
                    },
                )
            ).json()
            started = await api.post(
                "/api/node_discovery/run_scan/", json={"scan_ranges": [scan["id"]]}
            )
            assert started.status_code == 202, started.text

            async def scanned() -> bool:
                body = (await api.get(f"/api/node_discovery/scan_range/{scan['id']}/")).json()
                return bool(body["status"] != "scanning")

            async def scanning() -> bool:
                return not await scanned()

            await _outage(broker, api, scanning)

            await _until(scanned, 90, "the scan to finish")
            done = (await api.get(f"/api/node_discovery/scan_range/{scan['id']}/")).json()
            assert (done["status"], done["nodes_found"]) == ("ready", COUNT), done
            assert done["addresses_scanned"] == COUNT
            nodes = (await api.get(f"/api/node/?scan_range={scan['id']}")).json()["results"]
            ids = {n["id"] for n in nodes}
            assert len(ids) == COUNT

            # A bulk registration; the broker goes away while the registrar works on it.
            profile = await create_profile(api, admin_headers, [("root", "calvin")])
            accepted = await api.post(
                "/api/node/register/",
                json={"nodes": sorted(ids), "auth_profile": profile},
                params={"wait": 0},
            )
            assert accepted.status_code == 202, accepted.text

            async def registered() -> bool:
                listed = (await api.get(f"/api/node/?scan_range={scan['id']}")).json()["results"]
                return all(n["status"] != "registering" for n in listed)

            async def registering() -> bool:
                return not await registered()

            await _outage(broker, api, registering)

            await _until(registered, 120, "the registrations to finish")
            listed = (await api.get(f"/api/node/?scan_range={scan['id']}")).json()["results"]
            assert {n["status"] for n in listed} == {"registered"}, [n["error"] for n in listed]

            # Every process reconnected, and each piece of work took effect exactly once.
            assert api_runtime.broker_ready() and workers.broker_ready()
            completed = [
                e
                for e in await events(api_runtime, f"racksmith.evt.scan_range.{scan['id']}.*")
                if e["type"].endswith(("completed", "failed"))
            ]
            assert [e["type"] for e in completed] == ["io.racksmith.scan_range.completed"]
            discovered = Counter(
                e["data"]["id"]
                for e in await events(api_runtime, "racksmith.evt.node.*.discovered")
            )
            assert discovered == dict.fromkeys(ids, 1)
            outcomes = Counter(
                e["data"]["id"]
                for e in await events(api_runtime, "racksmith.evt.node.*.registered")
            )
            assert outcomes == dict.fromkeys(ids, 1)
            servers = Counter(
                e["data"]["node"]
                for e in await events(api_runtime, "racksmith.evt.server.*.created")
            )
            assert servers == dict.fromkeys(ids, 1)
    finally:
        await workers.close()
        await api_runtime.close()
