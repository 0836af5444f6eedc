"""``/api/events/stream/`` (Server-Sent Events) and ``/api/events/``, against real components.

The API is served by uvicorn exactly as ``racksmith up`` serves it (``serve_api``), on a free
loopback port, because a stream must really stream; events come from real API calls (pools,
assignments) through the outbox and NATS, and what the endpoints say is compared with what the
JetStream stream holds.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx_sse import ServerSentEvent, aconnect_sse
from nats.js.api import AckPolicy, ConsumerConfig

from services.api.event_feed import StreamBounds, resume
from services.processes import serve_api
from shared.contracts.events import make_event
from shared.messaging.streams import EVENTS_STREAM
from shared.platform.natsserver import EmbeddedNatsServer, free_port
from shared.platform.runtime import Runtime
from tests.conftest import bearer, make_settings, obtain_tokens
from tests.pool_helpers import make_servers
from tests.processes import Up

STREAM = "/api/events/stream/"
EVENTS = "/api/events/"
HEARTBEAT_S = 0.2
# Guards against a hang only; every wait below ends as soon as its condition holds.
WAIT_S = 30.0


@asynccontextmanager
async def served(
    session_dir: Path, database_url: str, nats_server: EmbeddedNatsServer, **extra: Any
) -> AsyncIterator[tuple[str, Runtime, asyncio.Task[None], asyncio.Event]]:
    """The API as ``racksmith up`` serves it; yields its URL, runtime, serving task and stop."""
    settings = make_settings(
        session_dir,
        database_url,
        nats_server.client_url(),
        port=free_port(),
        **({"sse_heartbeat_s": HEARTBEAT_S} | extra),
    )
    runtime = Runtime(settings, nats_server.client_url())
    await runtime.connect()
    stop, listening = asyncio.Event(), asyncio.Event()
    serving = asyncio.create_task(serve_api(runtime, stop, listening.set))
    try:
        async with asyncio.timeout(WAIT_S):
            await asyncio.wait(
                {serving, asyncio.ensure_future(listening.wait())},
                return_when=asyncio.FIRST_COMPLETED,
            )
        assert listening.is_set(), "the API did not start"
        yield f"http://127.0.0.1:{settings.port}", runtime, serving, stop
    finally:
        stop.set()
        await serving
        await runtime.close()


@pytest.fixture(scope="module")
async def api_url(
    session_dir: Path, database_url: str, nats_server: EmbeddedNatsServer, runtime: Runtime
) -> AsyncIterator[str]:
    async with served(session_dir, database_url, nats_server) as (url, _, _, _):
        yield url


@dataclass
class Frames:
    """An open event stream: its opening frame, then the frames that carry data."""

    opening: ServerSentEvent
    source: AsyncIterator[ServerSentEvent]

    async def take(self, count: int) -> list[ServerSentEvent]:
        found: list[ServerSentEvent] = []
        async with asyncio.timeout(WAIT_S):
            while len(found) < count:
                frame = await anext(self.source)
                if frame.data:
                    found.append(frame)
        return found


@asynccontextmanager
async def stream(url: str, headers: dict[str, str], **params: Any) -> AsyncIterator[Frames]:
    async with (
        httpx.AsyncClient(base_url=url, timeout=WAIT_S) as http,
        aconnect_sse(http, "GET", STREAM, headers=dict(headers), params=params) as source,
    ):
        assert source.response.status_code == 200, await source.response.aread()
        frames = source.aiter_sse()
        try:
            yield Frames(await anext(frames), frames)
        finally:
            await frames.aclose()


async def published(runtime: Runtime, *subjects: str) -> dict[int, bytes]:
    """What RACKSMITH_EVENTS holds on ``subjects``: stream sequence → message body."""
    assert runtime.nats is not None
    js = runtime.nats.jetstream()
    subscription = await js.pull_subscribe(
        "",
        stream=EVENTS_STREAM,
        config=ConsumerConfig(
            filter_subjects=list(subjects), ack_policy=AckPolicy.NONE, mem_storage=True
        ),
    )
    found: dict[int, bytes] = {}
    try:
        left = (await subscription.consumer_info()).num_pending or 0
        while len(found) < left:
            for message in await subscription.fetch(left - len(found), timeout=WAIT_S):
                found[message.metadata.sequence.stream] = message.data
    finally:
        await js.delete_consumer(EVENTS_STREAM, (await subscription.consumer_info()).name)
        await subscription.unsubscribe()
    return found


async def api_consumers(runtime: Runtime) -> set[str]:
    assert runtime.nats is not None
    infos = await runtime.nats.jetstream().consumers_info(EVENTS_STREAM)
    return {info.name for info in infos if info.name.startswith("api-events-")}


_tags = itertools.count()


@dataclass
class Side:
    """A group with one member, one pool and three unassigned servers."""

    group: int
    pool: int
    servers: list[int]
    headers: dict[str, str]


async def make_side(
    client: httpx.AsyncClient, admin: dict[str, str], runtime: Runtime, tag: str
) -> Side:
    tag = f"{tag}{next(_tags)}"
    group = (await client.post("/api/groups/", json={"name": tag}, headers=admin)).json()["id"]
    created = await client.post(
        "/api/users/",
        json={"username": f"u-{tag}", "password": "password-123", "groups": [group]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    pool = await client.post("/api/pool/", json={"name": f"p-{tag}", "group": group}, headers=admin)
    servers = await make_servers(runtime, f"sse{tag}", 3)
    tokens = await obtain_tokens(client, f"u-{tag}", "password-123")
    return Side(group, pool.json()["id"], [s.id or 0 for s in servers], bearer(tokens["access"]))


async def assign(
    client: httpx.AsyncClient, admin: dict[str, str], pool: int, *servers: int
) -> None:
    response = await client.post(
        f"/api/pool/{pool}/assign_servers/", json={"servers": list(servers)}, headers=admin
    )
    assert response.status_code == 200, response.text


async def unassign(client: httpx.AsyncClient, admin: dict[str, str], *servers: int) -> None:
    response = await client.post(
        "/api/server/remove_from_pool/", json={"servers": list(servers)}, headers=admin
    )
    assert response.status_code == 200, response.text


async def rename(client: httpx.AsyncClient, admin: dict[str, str], pool: int, name: str) -> None:
    response = await client.patch(f"/api/pool/{pool}/", json={"name": name}, headers=admin)
    assert response.status_code == 200, response.text


def kinds(frames: list[ServerSentEvent]) -> list[tuple[str, str]]:
    """(type, subject) of each frame, read from the CloudEvent it carries."""
    return [(f.json()["type"], f.json()["subject"]) for f in frames]


def side_subjects(side: Side) -> list[str]:
    return [f"racksmith.evt.server.{s}.*" for s in side.servers] + [
        f"racksmith.evt.pool.{side.pool}.*"
    ]


def side_entities(side: Side) -> str:
    return ",".join([f"server/{s}" for s in side.servers] + [f"pool/{side.pool}"])


async def test_filters_select_types_and_entities(
    api_url: str, client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    side = await make_side(client, admin_headers, runtime, "filters")
    x, y, _ = side.servers
    async with (
        stream(
            api_url,
            admin_headers,
            type="server.unassigned",
            entity=[f"server/{x}", f"server/{y}"],
        ) as unassignments,
        stream(
            api_url,
            admin_headers,
            type="io.racksmith.pool.updated,pool.deleted",
            entity=f"pool/{side.pool},server",
        ) as pool_changes,
        stream(api_url, admin_headers, entity=f"server/{x}") as server_x,
    ):
        await assign(client, admin_headers, side.pool, x, y)
        await rename(client, admin_headers, side.pool, f"renamed-{side.pool}")
        await unassign(client, admin_headers, x)
        await unassign(client, admin_headers, y)
        deleted = await client.delete(f"/api/pool/{side.pool}/", headers=admin_headers)
        assert deleted.status_code == 204
        await assign(client, admin_headers, 1, x)  # the default pool

        # Anything the filter should have dropped was published before the last frame read.
        assert kinds(await unassignments.take(2)) == [
            ("io.racksmith.server.unassigned", f"server/{x}"),
            ("io.racksmith.server.unassigned", f"server/{y}"),
        ]
        assert kinds(await pool_changes.take(2)) == [
            ("io.racksmith.pool.updated", f"pool/{side.pool}"),
            ("io.racksmith.pool.deleted", f"pool/{side.pool}"),
        ]
        frames = await server_x.take(3)
        assert kinds(frames) == [
            ("io.racksmith.server.assigned", f"server/{x}"),
            ("io.racksmith.server.unassigned", f"server/{x}"),
            ("io.racksmith.server.assigned", f"server/{x}"),
        ]
    # Each frame: id = stream sequence, event = CloudEvent type, data = the body as on NATS.
    stored = await published(runtime, f"racksmith.evt.server.{x}.*")
    for frame in frames:
        assert frame.data.encode() == stored[int(frame.id)]
        assert frame.event == frame.json()["type"]


async def test_resume_gives_exactly_the_missed_events_and_none_to_another_group(
    api_url: str, client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    """The acceptance criterion of the issue."""
    mine = await make_side(client, admin_headers, runtime, "resume-a")
    other = await make_side(client, admin_headers, runtime, "resume-b")
    a1, a2, a3 = mine.servers
    entities = f"{side_entities(mine)},{side_entities(other)}"

    async with stream(api_url, mine.headers, entity=entities) as before:
        await assign(client, admin_headers, mine.pool, a1)
        (received,) = await before.take(1)
    last_id = received.id  # the client is disconnected from here on

    await assign(client, admin_headers, other.pool, other.servers[0])  # other group's, first
    await assign(client, admin_headers, mine.pool, a2, a3)
    await rename(client, admin_headers, mine.pool, f"while-away-{mine.pool}")
    await unassign(client, admin_headers, a1)  # seen through `previous_pool`
    missed = sorted(s for s in await published(runtime, *side_subjects(mine)) if s > int(last_id))
    assert len(missed) == 4

    async with (
        stream(api_url, {**mine.headers, "Last-Event-ID": last_id}, entity=entities) as member,
        stream(api_url, other.headers, entity=entities, last_event_id=last_id) as outsider,
    ):
        assert [int(f.id) for f in await member.take(len(missed))] == missed
        await assign(client, admin_headers, other.pool, other.servers[1])
        await assign(client, admin_headers, mine.pool, a1)
        # The next event is the new one: nothing was sent twice.
        assert kinds(await member.take(1)) == [("io.racksmith.server.assigned", f"server/{a1}")]
        # The other group's member got its own two events and none of the first group's.
        assert kinds(await outsider.take(2)) == [
            ("io.racksmith.server.assigned", f"server/{other.servers[0]}"),
            ("io.racksmith.server.assigned", f"server/{other.servers[1]}"),
        ]


async def test_a_member_sees_a_pool_created_for_the_group_while_streaming(
    api_url: str, client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    side = await make_side(client, admin_headers, runtime, "live-scope")
    async with stream(api_url, side.headers, entity="pool,server") as member:
        pool = await client.post(
            "/api/pool/",
            json={"name": f"new-{side.pool}", "group": side.group},
            headers=admin_headers,
        )
        new_pool = pool.json()["id"]
        await assign(client, admin_headers, new_pool, side.servers[0])
        assert kinds(await member.take(2)) == [
            ("io.racksmith.pool.created", f"pool/{new_pool}"),
            ("io.racksmith.server.assigned", f"server/{side.servers[0]}"),
        ]


async def test_opening_frame_retry_hint_and_heartbeats(
    api_url: str, client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    side = await make_side(client, admin_headers, runtime, "heartbeat")
    assert runtime.nats is not None
    last = (await runtime.nats.jetstream().stream_info(EVENTS_STREAM)).state.last_seq
    lines: list[str] = []
    # Types and entities that exclude each other: nothing may come, not even to a superuser.
    params = {"type": "node.registered", "entity": "server"}
    async with (
        httpx.AsyncClient(base_url=api_url, timeout=WAIT_S) as http,
        http.stream("GET", STREAM, headers=admin_headers, params=params) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        async with asyncio.timeout(WAIT_S):
            async for line in response.aiter_lines():
                lines.append(line)
                if line == "" and lines.count("") == 1:  # the opening frame is complete
                    await assign(client, admin_headers, side.pool, side.servers[0])
                if lines.count(": heartbeat") == 2:
                    break
    opening = lines[: lines.index("")]
    assert "retry: 3000" in opening
    # Without Last-Event-ID a stream starts at the end; its position comes first.
    assert int(next(line for line in opening if line.startswith("id: "))[4:]) >= last
    assert not [line for line in lines if line.startswith(("data:", "event:"))]


async def test_a_resume_point_beyond_the_stream_is_announced(
    api_url: str, client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    side = await make_side(client, admin_headers, runtime, "beyond")
    async with stream(
        api_url, admin_headers, entity=f"server/{side.servers[0]}", last_event_id="999999999"
    ) as frames:
        notice, *_ = await frames.take(1)
        assert notice.event == "events_lost"
        assert notice.json()["last_event_id"] == 999999999
        await assign(client, admin_headers, side.pool, side.servers[0])
        assert kinds(await frames.take(1)) == [
            ("io.racksmith.server.assigned", f"server/{side.servers[0]}")
        ]


def test_a_resume_point_that_aged_out_is_announced() -> None:
    assert resume(10, StreamBounds(first=5, last=20)).lost is None
    aged = resume(10, StreamBounds(first=50, last=60))
    assert aged.after == 49
    assert aged.lost is not None and aged.lost["first_sequence"] == 50
    assert resume(0, StreamBounds(first=0, last=0)).lost is None


async def test_disconnecting_ends_the_stream_and_releases_its_consumer(
    api_url: str, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    before = await api_consumers(runtime)
    async with stream(api_url, admin_headers):
        during = await api_consumers(runtime)
        assert len(during - before) == 1
    async with asyncio.timeout(WAIT_S):
        while (await api_consumers(runtime)) & during - before:
            await asyncio.sleep(0.05)


async def test_a_stream_survives_losing_its_consumer(
    api_url: str, client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    """A consumer reaped while a slow client held the stream, or lost with a NATS restart, is
    re-created after the last event sent: nothing skipped, nothing repeated."""
    assert runtime.nats is not None
    side = await make_side(client, admin_headers, runtime, "reaped")
    before = await api_consumers(runtime)
    async with stream(api_url, admin_headers, entity=side_entities(side)) as frames:
        await assign(client, admin_headers, side.pool, side.servers[0])
        (first,) = await frames.take(1)
        for consumer in (await api_consumers(runtime)) - before:
            await runtime.nats.jetstream().delete_consumer(EVENTS_STREAM, consumer)
        await assign(client, admin_headers, side.pool, side.servers[1], side.servers[2])
        await unassign(client, admin_headers, side.servers[0])
        rest = await frames.take(3)
    stored = await published(runtime, *side_subjects(side))
    assert [int(f.id) for f in [first, *rest]] == sorted(s for s in stored if s >= int(first.id))


async def test_server_shutdown_ends_open_streams(
    session_dir: Path,
    database_url: str,
    nats_server: EmbeddedNatsServer,
    admin_headers: dict[str, str],
    runtime: Runtime,
) -> None:
    async with served(session_dir, database_url, nats_server) as (url, own, serving, stop):
        # Streams of earlier tests may still be closing theirs: only this stream's counts.
        earlier = await api_consumers(own)
        async with stream(url, admin_headers) as frames:
            consumers = await api_consumers(own) - earlier
            assert consumers
            stop.set()
            async with asyncio.timeout(WAIT_S):
                await serving  # uvicorn waits for open responses: ending them lets it finish
            with pytest.raises(StopAsyncIteration):
                await frames.take(1)
        assert not (await api_consumers(runtime)) & consumers


def test_racksmith_up_stops_on_ctrl_c_with_a_stream_open(tmp_path: Path) -> None:
    up = Up(tmp_path / "state", env={"RACKSMITH_ADMIN_PASSWORD": "up-password-1"})
    try:
        token = httpx.post(
            f"{up.url}/api/token/", json={"username": "admin", "password": "up-password-1"}
        ).json()["access"]
        with httpx.stream(
            "GET", f"{up.url}{STREAM}", headers=bearer(token), timeout=WAIT_S
        ) as response:
            lines = response.iter_lines()
            assert next(lines) == ": racksmith events"  # the stream is open
            assert up.stop() == 0  # within Up.stop's wait, or it fails
            assert list(lines)[-1] == ""  # the server ended the stream cleanly
    finally:
        if up.process.poll() is None:
            up.process.kill()


@pytest.mark.parametrize(
    ("path", "params", "headers", "field"),
    [
        (STREAM, {"type": "server.exploded"}, {}, "type"),
        (STREAM, {"type": "server.assigned,nope"}, {}, "type"),
        (STREAM, {"entity": "rack"}, {}, "entity"),
        (STREAM, {"entity": "server/abc"}, {}, "entity"),
        (STREAM, {}, {"Last-Event-ID": "abc"}, "Last-Event-ID"),
        (STREAM, {"last_event_id": "-1"}, {}, "last_event_id"),
        (EVENTS, {"entity": "server/0"}, {}, "entity"),
        (EVENTS, {"page_size": "1001"}, {}, "page_size"),
        (EVENTS, {"page_size": "0"}, {}, "page_size"),
        (EVENTS, {"cursor": "not-a-cursor"}, {}, "cursor"),
        (EVENTS, {"since": "yesterday"}, {}, "since"),
    ],
)
async def test_bad_input_is_400_naming_the_field(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    path: str,
    params: dict[str, str],
    headers: dict[str, str],
    field: str,
) -> None:
    response = await client.get(path, params=params, headers=admin_headers | headers)
    assert response.status_code == 400, response.text
    assert list(response.json()) == [field]


@pytest.mark.parametrize("path", [STREAM, EVENTS])
async def test_unauthenticated_is_401(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path)
    assert response.status_code == 401
    assert "detail" in response.json()


async def walk(
    client: httpx.AsyncClient, headers: dict[str, str], url: str, direction: str
) -> list[tuple[str, list[int]]]:
    """Follow ``direction`` links from ``url``: each page's URL and sequences."""
    pages: list[tuple[str, list[int]]] = []
    next_url: str | None = url
    while next_url is not None:
        response = await client.get(next_url, headers=headers)
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append((next_url, [event["sequence"] for event in body["results"]]))
        next_url = body[direction]
    return pages


def flat(pages: list[tuple[str, list[int]]]) -> list[int]:
    return [sequence for _, page in pages for sequence in page]


async def test_the_list_walks_every_event_once_newest_first(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    side = await make_side(client, admin_headers, runtime, "list")
    other = await make_side(client, admin_headers, runtime, "outsider")
    for server in side.servers:
        await assign(client, admin_headers, side.pool, server)
        await unassign(client, admin_headers, server)
    await rename(client, admin_headers, side.pool, f"listed-{side.pool}")
    stored = await published(runtime, *side_subjects(side))
    assert len(stored) == 8  # pool created and renamed, each server assigned and unassigned
    query = f"{EVENTS}?entity={side_entities(side)}&page_size=3"

    pages = await walk(client, admin_headers, query, "next")
    assert [len(page) for _, page in pages] == [3, 3, 2]
    assert flat(pages) == sorted(stored, reverse=True)
    first = (await client.get(query, headers=admin_headers)).json()
    assert first["previous"] is None
    assert first["next"].startswith("http://testserver/api/events/?")
    newest = first["results"][0]
    assert newest["specversion"] == "1.0" and newest["type"] == "io.racksmith.pool.updated"
    assert newest["sequence"] == max(stored)

    # From the last page back to the first through `previous`: the same events, once each.
    back = await walk(client, admin_headers, pages[-1][0], "previous")
    assert [page for _, page in back] == [page for _, page in reversed(pages)]

    nothing = await client.get(
        EVENTS, params={"type": "node.registered", "entity": "server"}, headers=admin_headers
    )
    assert nothing.json() == {"next": None, "previous": None, "results": []}

    # Same access rules as the stream: the member sees the group's events, an outsider none.
    assert flat(await walk(client, side.headers, query, "next")) == flat(pages)
    assert flat(await walk(client, other.headers, query, "next")) == []


async def test_the_list_filters_by_time(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    side = await make_side(client, admin_headers, runtime, "since")
    await assign(client, admin_headers, side.pool, side.servers[0])
    cut = datetime.now(UTC)
    await assign(client, admin_headers, side.pool, side.servers[1])
    listed = await client.get(
        EVENTS,
        params={"entity": side_entities(side), "since": cut.isoformat()},
        headers=admin_headers,
    )
    assert [(e["type"], e["subject"]) for e in listed.json()["results"]] == [
        ("io.racksmith.server.assigned", f"server/{side.servers[1]}")
    ]


async def test_a_narrow_filter_pages_through_a_dense_stream(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    """A few matches among many other events: the page is found by counting, not by reading
    the stream, and is still exact."""
    target, filler = 900_000_001, 900_000_002
    version = itertools.count()

    async def publish(entity_id: int, count: int) -> None:
        for _ in range(count):
            event = make_event("scan_range", entity_id, "started", version=next(version), data={})
            await runtime.publisher.event(event)

    await publish(target, 2)
    await publish(filler, 1500)
    await publish(target, 2)
    await publish(filler, 300)
    targets = sorted(await published(runtime, f"racksmith.evt.scan_range.{target}.*"))
    fillers = sorted(await published(runtime, f"racksmith.evt.scan_range.{filler}.*"))

    pages = await walk(
        client, admin_headers, f"{EVENTS}?entity=scan_range/{target}&page_size=1", "next"
    )
    assert flat(pages) == targets[::-1]
    newest = await client.get(
        EVENTS, params={"entity": f"scan_range/{filler}", "page_size": 5}, headers=admin_headers
    )
    assert [e["sequence"] for e in newest.json()["results"]] == fillers[-5:][::-1]
