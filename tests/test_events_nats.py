"""Subscribing on NATS, as docs/events.md tells other systems to: a durable consumer that was
offline during a whole discover → register → inventory → pool run replays every event of it,
in order, none missing, none twice; the documented Python examples run verbatim."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bmclab import Lab, LabConfig
from shared.contracts import asyncapi
from shared.core.settings import Settings
from shared.messaging.permissions import EVENTS_READER
from shared.messaging.streams import EVENTS_STREAM
from shared.platform.natsserver import EmbeddedNatsServer
from shared.platform.runtime import Runtime
from tests.discovery_helpers import create_profile, discover, nodes_of_range, scanner
from tests.lab_net import LAB_NET
from tests.test_event_contract import validator_for

pytestmark = [pytest.mark.broker, pytest.mark.lab]

ROOT = Path(__file__).resolve().parents[1]
NETWORK = f"{LAB_NET}.230"
BMCS = 5
# Within one entity, a change listed here never comes after a change listed later.
LIFECYCLE = {
    "node": ["discovered", "registering", "registered"],
    "server": ["created", "inventoried", "assigned"],
}


def doc_examples() -> list[str]:
    """The Python code blocks of docs/events.md, in order."""
    text = (ROOT / "docs" / "events.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def run_example(code: str, nats_url: str, *args: str) -> list[tuple[int, str, str]]:
    """Run a documented example as a script; its output lines are ``sequence type id``."""
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, "NATS_URL": nats_url},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    rows = []
    for line in done.stdout.splitlines():
        sequence, event_type, event_id = line.split()
        rows.append((int(sequence), event_type, event_id))
    return rows


@dataclass
class Run:
    first_sequence: int
    started_at: datetime
    live: list[dict[str, Any]]  # what a subscriber connected throughout received, in order
    nats_url: str
    # The CloudEvent subjects of this run's own objects (leftover work of earlier tests, e.g. a
    # queued inventory of a server whose lab is gone, may add events about other objects).
    subjects: set[str]


async def _stream_last_sequence(runtime: Runtime) -> int:
    assert runtime.nats is not None
    info = await runtime.nats.jetstream().stream_info(EVENTS_STREAM)
    return info.state.last_seq


async def _settled(runtime: Runtime) -> None:
    """Wait until no event has been published for a while (outbox relayed, workers idle)."""
    last = -1
    while True:
        current = await _stream_last_sequence(runtime)
        if current == last:
            return
        last = current
        await asyncio.sleep(1.0)


@pytest.fixture(scope="module")
async def run(
    settings: Settings,
    runtime: Runtime,
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    nats_server: EmbeddedNatsServer,
) -> AsyncIterator[Run]:
    assert runtime.nats is not None
    # What another system is given: the read-only `events` user.
    reader_url = nats_server.client_url(EVENTS_READER)
    examples = doc_examples()
    # The subscriber registers its durable consumer (and catches up on older tests' events),
    # then goes offline for the whole run.
    await asyncio.to_thread(run_example, examples[0], reader_url)
    await _settled(runtime)
    first_sequence = await _stream_last_sequence(runtime) + 1
    started_at = datetime.now(UTC)
    await runtime.nats.jetstream().add_consumer(
        EVENTS_STREAM,
        ConsumerConfig(
            durable_name="offline-everything",
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE,
            opt_start_seq=first_sequence,
            ack_policy=AckPolicy.EXPLICIT,
        ),
    )
    live: list[dict[str, Any]] = []

    async def on_event(message: Msg) -> None:
        live.append(json.loads(message.data))

    listening = await runtime.nats.subscribe("racksmith.evt.>", cb=on_event)
    fast = settings.model_copy(update={"inventory_interval_s": 0.0})
    config = LabConfig(count=BMCS, network=f"{NETWORK}.0/24", latency="5", seed=23)
    async with Lab(config) as lab, scanner(fast, ("scanner", "registrar", "inventory")):
        profile = await create_profile(client, admin_headers, [("root", "calvin")])
        scanned = await discover(
            client, admin_headers, "events run", f"{NETWORK}.1", lab.manifest[-1].address
        )
        nodes = await nodes_of_range(client, admin_headers, scanned["id"])
        registered = await client.post(
            "/api/node/register/",
            json={"nodes": [n["id"] for n in nodes], "auth_profile": profile},
            headers=admin_headers,
        )
        assert registered.status_code == 200, registered.text
        server_ids = [s for r in registered.json()["results"] for s in r["servers"]]
        async with asyncio.timeout(90):
            while True:
                listed = (
                    await client.get("/api/server/?page_size=1000", headers=admin_headers)
                ).json()["results"]
                states = {s["id"]: s["inventory_status"] for s in listed if s["id"] in server_ids}
                if len(states) == len(server_ids) and "pending" not in states.values():
                    break
                await asyncio.sleep(0.3)
        pool = await client.post(
            "/api/pool/", json={"name": f"events run {first_sequence}"}, headers=admin_headers
        )
        assigned = await client.post(
            f"/api/pool/{pool.json()['id']}/assign_servers/",
            json={"servers": server_ids},
            headers=admin_headers,
        )
        assert assigned.status_code == 200, assigned.text
        await _settled(runtime)
    await listening.unsubscribe()
    subjects = {
        f"scan_range/{scanned['id']}",
        f"pool/{pool.json()['id']}",
        *(f"node/{n['id']}" for n in nodes),
        *(f"server/{s}" for s in server_ids),
    }
    yield Run(first_sequence, started_at, live, reader_url, subjects)


async def test_the_run_emitted_every_change_once(run: Run) -> None:
    counts: dict[str, int] = {}
    for event in run.live:
        if event["subject"] in run.subjects:
            short = event["type"].removeprefix("io.racksmith.")
            counts[short] = counts.get(short, 0) + 1
    servers = sum(s.startswith("server/") for s in run.subjects)
    assert servers >= BMCS
    assert counts == {
        "scan_range.started": 1,
        "scan_range.completed": 1,
        "node.discovered": BMCS,
        "node.registering": BMCS,
        "node.registered": BMCS,
        "server.created": servers,
        "server.inventoried": servers,
        "pool.created": 1,
        "server.assigned": servers,
    }


async def test_an_offline_subscriber_replays_every_event_in_order(
    run: Run, runtime: Runtime
) -> None:
    assert runtime.nats is not None
    subscription = await runtime.nats.jetstream().pull_subscribe_bind(
        "offline-everything", stream=EVENTS_STREAM
    )
    replayed: list[dict[str, Any]] = []
    while True:
        try:
            messages = await subscription.fetch(200, timeout=2)
        except TimeoutError:
            break
        for message in messages:
            replayed.append(json.loads(message.data))
            await message.ack()
    await subscription.unsubscribe()

    ids = [e["id"] for e in replayed]
    assert len(ids) == len(set(ids)), "an event was replayed twice"
    assert ids == [e["id"] for e in run.live], "replay differs from what was published live"
    assert replayed == run.live

    document = asyncapi.document()
    position: dict[tuple[str, str], int] = {}
    for event in replayed:
        validator_for(document, event["type"]).validate(event)
        entity, entity_id = event["subject"].split("/")
        change = event["type"].rsplit(".", 1)[1]
        lifecycle = LIFECYCLE.get(entity, [])
        if change in lifecycle:
            step = lifecycle.index(change)
            assert step >= position.get((entity, entity_id), 0), (
                f"{event['type']} of {event['subject']} came after a later change"
            )
            position[(entity, entity_id)] = step
    times = [datetime.fromisoformat(e["time"]) for e in replayed]
    assert all(t >= run.started_at for t in times)


async def test_documented_durable_consumer_resumes_where_it_stopped(run: Run) -> None:
    rows = await asyncio.to_thread(run_example, doc_examples()[0], run.nats_url)
    expected = [
        e["id"]
        for e in run.live
        if e["type"].startswith("io.racksmith.server.") or e["type"].endswith(".error")
    ]
    assert expected
    assert [event_id for _, _, event_id in rows] == expected
    sequences = [sequence for sequence, _, _ in rows]
    assert sequences == sorted(sequences) and sequences[0] >= run.first_sequence
    # Caught up: the next run has nothing new to process.
    assert await asyncio.to_thread(run_example, doc_examples()[0], run.nats_url) == []


async def test_documented_replay_from_a_sequence_or_a_time(run: Run) -> None:
    expected = [e["id"] for e in run.live]
    by_sequence = await asyncio.to_thread(
        run_example, doc_examples()[1], run.nats_url, str(run.first_sequence)
    )
    assert [event_id for _, _, event_id in by_sequence] == expected
    by_time = await asyncio.to_thread(
        run_example,
        doc_examples()[1],
        run.nats_url,
        run.started_at.isoformat().replace("+00:00", "Z"),
    )
    assert [event_id for _, _, event_id in by_time] == expected
