"""Who hears which events (issue 16, finding 7): a member's readers ask NATS only for that
member's objects, follow them as they move, never see another group's pools through a reused
group id, get BMC failures without their details, and hold a bounded number of streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from services.inventory import store
from shared.messaging.streams import EVENTS_STREAM
from shared.models import InventoryErrorCode, Job, JobState
from shared.platform.natsserver import EmbeddedNatsServer
from shared.platform.runtime import Runtime
from tests.conftest import bearer, obtain_tokens
from tests.test_events_stream import (
    api_consumers,
    assign,
    kinds,
    make_side,
    rename,
    served,
    stream,
    unassign,
)

# What a BMC failure looks like to a superuser: the BMC's address and the account tried.
REASON = "BMC 10.1.2.3: login as 'svc-racksmith' refused (401)"
MAX_STREAMS = 2


@pytest.fixture(scope="module")
async def api_url(
    session_dir: Path, database_url: str, nats_server: EmbeddedNatsServer, runtime: Runtime
) -> AsyncIterator[str]:
    async with served(
        session_dir, database_url, nats_server, sse_max_streams_per_user=MAX_STREAMS
    ) as (url, _, _, _):
        yield url


async def _fail_inventory(runtime: Runtime, server_id: int) -> None:
    """What the inventory worker records when a BMC refuses its login."""
    async with runtime.db.session() as session:
        server = await store.locked_server(session, server_id)
        assert server is not None
        store.record_failure(session, server, REASON, InventoryErrorCode.bmc_credentials_refused)
        await session.commit()
    await runtime.outbox.relay()


async def _finished_job(runtime: Runtime, server_id: int) -> int:
    """A job that ran on the server (a row: no worker needed to have one)."""
    async with runtime.db.session() as session:
        job = Job(kind="power", server_id=server_id, state=JobState.completed)
        session.add(job)
        await session.commit()
        assert job.id is not None
        return job.id


async def _filter_subjects(runtime: Runtime, names: set[str]) -> set[str]:
    assert runtime.nats is not None
    js = runtime.nats.jetstream()
    subjects: set[str] = set()
    for name in names:
        info = await js.consumer_info(EVENTS_STREAM, name)
        config = info.config
        subjects |= set(config.filter_subjects or [config.filter_subject or ">"])
    return subjects


async def test_a_members_reader_asks_nats_for_the_members_objects_only(
    api_url: str, client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    mine = await make_side(client, admin_headers, runtime, "narrow-a")
    other = await make_side(client, admin_headers, runtime, "narrow-b")
    await assign(client, admin_headers, mine.pool, *mine.servers[:2])
    await assign(client, admin_headers, other.pool, *other.servers)
    # A job of one of the member's servers (and of another group's): heard by id, as servers.
    job = await _finished_job(runtime, mine.servers[0])
    await _finished_job(runtime, other.servers[0])
    before = await api_consumers(runtime)
    async with stream(api_url, mine.headers):
        opened = await api_consumers(runtime) - before
        assert len(opened) == 1
        subjects = await _filter_subjects(runtime, opened)
    a1, a2, _ = mine.servers
    assert subjects == {
        f"racksmith.evt.server.{a1}.*",
        f"racksmith.evt.server.{a2}.*",
        # Moves may bring a server or switch into view: heard for all, kept by the pools named.
        "racksmith.evt.server.*.assigned",
        "racksmith.evt.server.*.unassigned",
        "racksmith.evt.switch.*.assigned",
        "racksmith.evt.switch.*.unassigned",
        "racksmith.evt.pool.*.*",
        f"racksmith.evt.job.{job}.*",
        # A new job of the member's servers comes into view with its first event.
        "racksmith.evt.job.*.created",
    }


async def test_a_stream_follows_servers_into_and_out_of_view(
    api_url: str, client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    side = await make_side(client, admin_headers, runtime, "follow")
    x = side.servers[0]
    async with stream(api_url, side.headers) as member:
        await assign(client, admin_headers, side.pool, x)
        # Not in the filter when the stream opened: the stream must widen it right after the
        # assignment, not lose what follows.
        await _fail_inventory(runtime, x)
        await unassign(client, admin_headers, x)
        await _fail_inventory(runtime, x)  # out of view again: not for this member
        await rename(client, admin_headers, side.pool, f"after-{side.pool}")
        frames = await member.take(4)
    assert kinds(frames) == [
        ("io.racksmith.server.assigned", f"server/{x}"),
        ("io.racksmith.server.inventory_failed", f"server/{x}"),
        ("io.racksmith.server.unassigned", f"server/{x}"),
        ("io.racksmith.pool.updated", f"pool/{side.pool}"),
    ]
    failed = frames[1].json()["data"]
    assert failed["inventory_error_code"] == "bmc_credentials_refused"
    assert failed["inventory_error"] == InventoryErrorCode.generic_text("bmc_credentials_refused")
    assert "svc-racksmith" not in frames[1].data


async def test_members_see_bmc_failures_without_their_details(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    side = await make_side(client, admin_headers, runtime, "redact")
    x = side.servers[0]
    await assign(client, admin_headers, side.pool, x)
    await _fail_inventory(runtime, x)

    admin_view = (await client.get(f"/api/server/{x}/", headers=admin_headers)).json()
    assert admin_view["inventory_error"] == REASON
    member_view = (await client.get(f"/api/server/{x}/", headers=side.headers)).json()
    assert member_view["inventory_error_code"] == "bmc_credentials_refused"
    assert member_view["inventory_error"] == (
        "The server's BMC refused the login; an administrator can see the details."
    )
    listed = await client.get(f"/api/server/?resource_pool={side.pool}", headers=side.headers)
    refreshed = await client.post(f"/api/server/{x}/refresh/", headers=side.headers)
    events = await client.get(
        "/api/events/", params={"entity": f"server/{x}"}, headers=side.headers
    )
    admin_events = await client.get(
        "/api/events/", params={"entity": f"server/{x}"}, headers=admin_headers
    )
    for response in (listed, refreshed, events):
        assert response.status_code in (200, 202), response.text
        assert "svc-racksmith" not in response.text and "10.1.2.3" not in response.text
    assert REASON in admin_events.text


async def test_too_many_visible_objects_fall_back_to_whole_entities(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import services.api.access
    import services.api.event_feed

    monkeypatch.setattr(services.api.access, "MAX_FILTER_SUBJECTS", 2)
    monkeypatch.setattr(services.api.event_feed, "MAX_FILTER_SUBJECTS", 2)
    mine = await make_side(client, admin_headers, runtime, "many-a")
    other = await make_side(client, admin_headers, runtime, "many-b")
    await assign(client, admin_headers, mine.pool, *mine.servers)
    await assign(client, admin_headers, other.pool, *other.servers)
    listed = await client.get(
        "/api/events/", params={"type": "server.assigned", "page_size": 1000}, headers=mine.headers
    )
    assert listed.status_code == 200
    subjects = {event["subject"] for event in listed.json()["results"]}
    assert subjects == {f"server/{s}" for s in mine.servers}


async def test_a_new_group_never_inherits_a_deleted_groups_pool_events(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    """Pool events name their group by id: a new group with a deleted one's id (SQLite handed
    out the highest id again) let its members read the old group's pool history."""
    old = await client.post("/api/groups/", json={"name": f"old-{unique}"}, headers=admin_headers)
    old_group = old.json()["id"]
    pool = await client.post(
        "/api/pool/", json={"name": f"secret-{unique}", "group": old_group}, headers=admin_headers
    )
    pool_id = pool.json()["id"]
    assert (await client.delete(f"/api/pool/{pool_id}/", headers=admin_headers)).status_code == 204
    deleted = await client.delete(f"/api/groups/{old_group}/", headers=admin_headers)
    assert deleted.status_code == 204

    new = await client.post("/api/groups/", json={"name": f"new-{unique}"}, headers=admin_headers)
    assert new.json()["id"] != old_group
    created = await client.post(
        "/api/users/",
        json={"username": f"n-{unique}", "password": "password-123", "groups": [new.json()["id"]]},
        headers=admin_headers,
    )
    assert created.status_code == 201
    member = bearer((await obtain_tokens(client, f"n-{unique}", "password-123"))["access"])
    listed = await client.get("/api/events/", params={"entity": f"pool/{pool_id}"}, headers=member)
    assert listed.status_code == 200
    assert listed.json()["results"] == []
    history = await client.get(
        "/api/events/", params={"entity": f"pool/{pool_id}"}, headers=admin_headers
    )
    assert len(history.json()["results"]) == 2  # created, deleted: they exist


async def test_open_streams_per_user_are_capped(
    api_url: str, client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    side = await make_side(client, admin_headers, runtime, "cap")
    other = await make_side(client, admin_headers, runtime, "cap-other")
    async with stream(api_url, side.headers), stream(api_url, side.headers):
        async with httpx.AsyncClient(base_url=api_url) as http:
            refused = await http.get("/api/events/stream/", headers=side.headers)
        assert refused.status_code == 429
        assert refused.json()["detail"].startswith("Too many open event streams")
        async with stream(api_url, other.headers) as others:
            assert others.opening.id is not None  # another user is not affected
    # Closed streams give their slots back.
    async with stream(api_url, side.headers), stream(api_url, side.headers):
        pass


async def test_a_stream_ends_when_its_token_goes_stale(
    api_url: str, client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    side = await make_side(client, admin_headers, runtime, "stale")
    async with stream(api_url, side.headers) as member:
        me = (await client.get("/api/users/me/", headers=side.headers)).json()
        changed = await client.patch(
            f"/api/users/{me['id']}/", json={"password": "changed-pass-1"}, headers=admin_headers
        )
        assert changed.status_code == 200
        # The next event that makes the stream look at its view again finds the token stale.
        await rename(client, admin_headers, side.pool, f"stale-{side.pool}")
        with pytest.raises(StopAsyncIteration):
            await member.take(2)
