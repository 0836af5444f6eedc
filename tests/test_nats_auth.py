"""NATS requires credentials, and each user may do only its component's part
(``shared.messaging.permissions``), against the suite's embedded nats-server — the same
configuration ``racksmith up`` generates."""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from aiohttp import web
from nats.aio.client import Client
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.api import StreamInfo
from prometheus_client import REGISTRY
from pydantic import SecretStr

from bmclab import Lab, LabConfig
from services.api.app import create_app
from services.workers import attach
from shared.contracts import catalog
from shared.core.settings import Settings
from shared.messaging.permissions import (
    COMPONENTS,
    DEPLOYED_USERS,
    EVENTS_READER,
    OUTBOX_WAKE,
    USERS,
    password_variable,
    relayed_entities,
    server_config,
)
from shared.messaging.streams import EVENTS_STREAM, LOGIN_THROTTLE_BUCKET
from shared.observability import sampling
from shared.platform.natsserver import EmbeddedNatsServer, find_binary, free_port
from shared.platform.runtime import Runtime
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, bearer, obtain_tokens
from tests.discovery_helpers import create_profile, discover, events, nodes_of_range
from tests.lab_net import LAB_NET
from tests.local_http import serving

pytestmark = pytest.mark.broker


@asynccontextmanager
async def connected_as(
    server: EmbeddedNatsServer, user: str
) -> AsyncIterator[tuple[Client, list[Exception]]]:
    """The client, and the server's asynchronous errors (permission violations) it got."""
    errors: list[Exception] = []

    async def record(error: Exception) -> None:
        errors.append(error)

    client = await nats.connect(
        server.client_url(user), error_cb=record, allow_reconnect=False, max_reconnect_attempts=0
    )
    try:
        yield client, errors
    finally:
        await client.close()


async def test_without_credentials_nobody_connects(nats_server: EmbeddedNatsServer) -> None:
    for url in (nats_server.url, f"nats://events:wrong-password@127.0.0.1:{nats_server.port}"):
        with pytest.raises((NatsError, OSError)):
            await nats.connect(url, allow_reconnect=False, max_reconnect_attempts=0)


def test_credentials_are_private_files(nats_server: EmbeddedNatsServer) -> None:
    for path in (nats_server.users_file, nats_server.config_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert set(json.loads(nats_server.users_file.read_text())) == set(USERS)
    assert nats_server.config_file.read_text().count('"password"') == len(USERS)


async def _publish_refused(client: Client, errors: list[Exception], subject: str) -> None:
    """A plain publish the server refuses: it reports a permissions violation, delivers
    nothing (checked by the caller's subscriber)."""
    await client.publish(subject, b"{}")
    await client.flush()
    async with asyncio.timeout(5):
        while not any("permissions violation" in str(e).lower() for e in errors):
            await asyncio.sleep(0.02)
    errors.clear()


async def _forged_events_reach_nobody(
    server: EmbeddedNatsServer, runtime: Runtime, user: str, subjects: list[str]
) -> None:
    assert runtime.nats is not None
    seen: list[str] = []

    async def on_event(message: Any) -> None:
        seen.append(message.subject)

    watcher = await runtime.nats.subscribe("racksmith.evt.>", cb=on_event)
    try:
        async with connected_as(server, user) as (client, errors):
            for subject in subjects:
                await _publish_refused(client, errors, subject)
            # Through JetStream too: no PubAck, nothing stored.
            with pytest.raises(NatsError):
                await client.jetstream().publish(subjects[0], b"{}", timeout=2)
        await runtime.nats.flush()
    finally:
        await watcher.unsubscribe()
    # (Other tests' events may pass by meanwhile; none of the forged ones may.)
    assert not set(seen) & set(subjects)


async def test_a_scanner_cannot_forge_other_components_events_or_commands(
    nats_server: EmbeddedNatsServer, runtime: Runtime
) -> None:
    await _forged_events_reach_nobody(
        nats_server,
        runtime,
        "scanner",
        [
            "racksmith.evt.pool.1.created",
            "racksmith.evt.node.1.registered",
            "racksmith.evt.server.1.inventoried",
            "racksmith.cmd.node.register",
            "racksmith.req.webhook.test",
        ],
    )


async def test_the_webhooks_worker_cannot_forge_events_it_would_deliver(
    nats_server: EmbeddedNatsServer, runtime: Runtime
) -> None:
    await _forged_events_reach_nobody(
        nats_server,
        runtime,
        "webhooks",
        [
            "racksmith.evt.pool.1.created",
            "racksmith.evt.node.1.certificate_accepted",
            "racksmith.cmd.server.inventory",
        ],
    )


async def test_the_api_publishes_commands_but_not_the_events_workers_own(
    nats_server: EmbeddedNatsServer, runtime: Runtime
) -> None:
    await _forged_events_reach_nobody(
        nats_server,
        runtime,
        "api",
        ["racksmith.evt.node.1.registered", "racksmith.evt.server.1.assigned"],
    )
    async with connected_as(nats_server, "api") as (client, errors):
        await client.publish(OUTBOX_WAKE, b"")
        await client.flush()
        await asyncio.sleep(0.2)
        assert errors == []


async def test_the_events_user_reads_events_and_publishes_nothing(
    nats_server: EmbeddedNatsServer, runtime: Runtime
) -> None:
    assert runtime.nats is not None
    async with connected_as(nats_server, EVENTS_READER) as (client, errors):
        js = client.jetstream()
        info = await js.stream_info(EVENTS_STREAM)
        assert info.config.name == EVENTS_STREAM
        for subject in ("racksmith.evt.pool.1.created", "racksmith.cmd.scan.range", OUTBOX_WAKE):
            await _publish_refused(client, errors, subject)
        with pytest.raises(NatsError):
            await js.delete_stream(EVENTS_STREAM)
    assert (await runtime.nats.jetstream().stream_info(EVENTS_STREAM)).config.name


async def test_a_component_cannot_read_another_components_replies(
    nats_server: EmbeddedNatsServer,
) -> None:
    async with connected_as(nats_server, "scanner") as (client, errors):
        await client.subscribe("_INBOX_api.>")
        await client.flush()
        async with asyncio.timeout(5):
            while not errors:
                await asyncio.sleep(0.02)
    assert "permissions violation" in str(errors[0]).lower()


def test_every_component_relays_only_the_entities_it_owns() -> None:
    owners = [e for c in COMPONENTS.values() for e in c.entities]
    assert len(owners) == len(set(owners)), "one owner per entity keeps events in order"
    assert set(owners) == set(catalog.ENTITIES)


def _throttle_writes(js: JetStreamContext) -> Awaitable[StreamInfo]:
    return js.stream_info(f"KV_{LOGIN_THROTTLE_BUCKET}")


def _jetstream_sampling_failures() -> float:
    """Scrape-time reads of the consumers' state that failed, in this process (all runtimes)."""
    value = REGISTRY.get_sample_value(
        "racksmith_metrics_sampling_failures_total", {"source": "jetstream"}
    )
    return value or 0.0


@pytest.mark.lab
async def test_each_component_does_its_part_with_its_own_user(
    nats_server: EmbeddedNatsServer, settings: Settings, runtime: Runtime, tmp_path: Path
) -> None:
    """The production shape: API and every worker kind on their own NATS users. Logins count in
    the shared throttle bucket; discovery, registration, inventory, a download by the fetcher
    and a power job (answered when done, ?wait=) run through; each entity's events are
    published by its owner, woken by whoever staged them; every process reads the consumers'
    state for its metrics — and nobody trips over a permission."""
    assert runtime.nats is not None
    stack = AsyncExitStack()
    errors: list[str] = []
    runtimes: dict[str, Runtime] = {}
    failures_before = _jetstream_sampling_failures()
    async with stack:
        for kind in ("api", "scanner", "registrar", "inventory", "fetcher", "jobs", "webhooks"):
            own = settings.model_copy(
                update={
                    "nats_url": nats_server.url,
                    "nats_user": kind,
                    "nats_password": SecretStr(nats_server.password(kind)),
                    "scan_connect_timeout_s": 0.5,
                    "scan_probe_timeout_s": 2.0,
                    "inventory_interval_s": 0.0,
                    "artifact_source_allowed_networks": "127.0.0.0/8",
                    "job_poll_interval_s": 0.2,
                }
            )
            rt = Runtime(own, nats_server.url, relays=relayed_entities([kind]))
            stack.push_async_callback(rt.close)
            await rt.connect()
            assert rt.nats is not None

            async def record(error: Exception, user: str = kind) -> None:
                errors.append(f"{user}: {error}")

            rt.nats._error_cb = record
            if kind != "api":
                attach(rt, [kind])
                await rt.start_consuming()
            runtimes[kind] = rt
        lab = await stack.enter_async_context(
            Lab(LabConfig(count=1, network=f"{LAB_NET}.221.0/24", latency="0", power_delay=0.2))
        )
        transport = httpx.ASGITransport(app=create_app(runtimes["api"]))
        api = await stack.enter_async_context(
            httpx.AsyncClient(transport=transport, base_url="http://t")
        )
        written = (await _throttle_writes(runtime.nats.jetstream())).state.last_seq
        headers = bearer((await obtain_tokens(api, ADMIN_USERNAME, ADMIN_PASSWORD))["access"])
        # Counted in the bucket every API replica shares, not in the process's memory.
        assert (await _throttle_writes(runtime.nats.jetstream())).state.last_seq > written
        pool = await api.post("/api/pool/", json={"name": f"perm-{tmp_path.name}"}, headers=headers)
        assert pool.status_code == 201
        address = lab.manifest[0].address
        done = await discover(api, headers, "permissions", address, address)
        (node,) = await nodes_of_range(api, headers, done["id"])
        profile = await create_profile(api, headers, [("root", "calvin")])
        registered = await api.post(
            f"/api/node/{node['id']}/register/", json={"auth_profile": profile}, headers=headers
        )
        assert registered.json()["status"] == "registered", registered.text
        (server_id,) = registered.json()["servers"]
        payload = tmp_path.name.encode() * 1000

        async def file(_: web.Request) -> web.Response:
            return web.Response(body=payload)

        source = web.Application()
        source.router.add_get("/bios.bin", file)
        source_url = f"{await stack.enter_async_context(serving(source))}/bios.bin"
        added = await api.post(
            "/api/firmware/",
            json={
                "name": "BIOS",
                "firmware_type": "BIOS",
                "version": "1.0",
                "source_url": source_url,
                "sha256": hashlib.sha256(payload).hexdigest(),
            },
            headers=headers,
        )
        assert added.status_code == 202, added.text
        firmware_id = added.json()["id"]
        async with asyncio.timeout(30):
            while (await api.get(f"/api/firmware/{firmware_id}/", headers=headers)).json()[
                "status"
            ] != "ready":
                await asyncio.sleep(0.1)
            while (await api.get(f"/api/server/{server_id}/", headers=headers)).json()[
                "inventory_status"
            ] != "collected":
                await asyncio.sleep(0.1)
            # The API queues the tick and waits on the job's events; the jobs worker publishes
            # them, and the inventory worker the server's power_changed it staged.
            off = await api.post(
                f"/api/server/{server_id}/power/?wait=30", json={"action": "off"}, headers=headers
            )
            assert off.status_code == 200 and off.json()["state"] == "completed", off.text
            job_id = off.json()["id"]
            wanted = {
                f"racksmith.evt.pool.{pool.json()['id']}.created",
                f"racksmith.evt.scan_range.{done['id']}.completed",
                f"racksmith.evt.node.{node['id']}.registering",
                f"racksmith.evt.node.{node['id']}.registered",
                f"racksmith.evt.server.{server_id}.created",
                f"racksmith.evt.server.{server_id}.inventoried",
                # Staged by the fetcher, published by the API (the catalog's owner).
                f"racksmith.evt.firmware.{firmware_id}.added",
                f"racksmith.evt.firmware.{firmware_id}.ready",
                # Staged by the API, published by the jobs worker.
                f"racksmith.evt.job.{job_id}.created",
                f"racksmith.evt.job.{job_id}.completed",
                # Staged by the jobs worker, published by the inventory worker.
                f"racksmith.evt.server.{server_id}.power_changed",
            }
            while wanted - {e["subject_nats"] for e in await _published(runtime, wanted)}:
                await asyncio.sleep(0.1)
        for rt in runtimes.values():
            await sampling.refresh(rt)
    assert errors == []
    assert _jetstream_sampling_failures() == failures_before


async def _published(runtime: Runtime, subjects: set[str]) -> list[dict[str, Any]]:
    found = []
    for subject in subjects:
        for event in await events(runtime, subject):
            found.append(event | {"subject_nats": subject})
    return found


async def test_the_deployed_configuration_reads_passwords_from_the_environment(
    tmp_path: Path,
) -> None:
    """``racksmith nats-users --format conf`` (the dev overlay's file) runs in a real
    nats-server, passwords from its environment as the manifests provide them."""
    conf = tmp_path / "nats-users.conf"
    conf.write_text(server_config("conf"))
    passwords = {user: f"pw-{user}-{tmp_path.name}" for user in DEPLOYED_USERS}
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        find_binary(),
        "--config",
        str(conf),
        "--addr",
        "127.0.0.1",
        "--port",
        str(port),
        env={password_variable(u): p for u, p in passwords.items()},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(15):
            while True:
                try:
                    client = await nats.connect(
                        f"nats://scanner:{passwords['scanner']}@127.0.0.1:{port}",
                        allow_reconnect=False,
                        max_reconnect_attempts=0,
                    )
                    break
                except (OSError, NatsError):
                    await asyncio.sleep(0.1)
        await client.close()
        with pytest.raises((NatsError, OSError)):
            await nats.connect(
                f"nats://scanner:{passwords['api']}@127.0.0.1:{port}",
                allow_reconnect=False,
                max_reconnect_attempts=0,
            )
    finally:
        process.terminate()
        await process.wait()
