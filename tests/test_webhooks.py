"""Webhooks end to end: real receivers (aiohttp servers on 127.0.0.1), events made through the
real API (pools), the webhooks worker on the real broker and database.

Receivers record every request they get; assertions are about what they received and in which
order, never about how long anything took.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web
from nats.js.api import DeliverPolicy
from sqlmodel import col, func, select

from services.api.app import create_app
from services.cli import build_parser
from services.webhooks import deliveries, dispatch
from services.workers import attach
from shared.contracts.events import make_event
from shared.core.settings import Settings
from shared.core.targets import (
    ARTIFACT_SOURCES,
    WEBHOOK_RECEIVERS,
    Destination,
    GuardedResolver,
    TargetError,
    TargetPolicy,
    TargetRefusedError,
)
from shared.messaging import streams
from shared.messaging.streams import EVENTS_STREAM, WEBHOOKS
from shared.models import Webhook, WebhookDelivery
from shared.platform.runtime import Runtime
from tests.discovery_helpers import events
from tests.local_http import serving

pytestmark = pytest.mark.broker

ROOT = Path(__file__).resolve().parents[1]
HOOKS = "/api/webhooks/"
CAP = 2  # deliveries in flight per webhook, in these tests


# --- receivers ---------------------------------------------------------------------------------


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    status: int | None = None  # what the receiver answered (None: never answered)

    def _attribute(self, name: str) -> str:
        """A CloudEvents attribute: a ``ce-`` header in binary mode, in the body otherwise."""
        if f"ce-{name}" in self.headers:
            return self.headers[f"ce-{name}"]
        value: str = json.loads(self.body)[name]
        return value

    @property
    def event_id(self) -> str:
        return self._attribute("id")

    @property
    def subject(self) -> str:
        return self._attribute("subject")


@dataclass
class Receiver:
    """A webhook receiver; its behaviour can change while a test runs."""

    fail_first: int = 0
    hang: bool = False
    redirect_to: str | None = None
    # Answer 503 with this Retry-After.
    busy_for: str | None = None
    # While set (not None and not released), requests wait for it before answering.
    gate: asyncio.Event | None = None
    requests: list[Received] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    in_flight_by_subject: Counter[str] = field(default_factory=Counter)
    max_in_flight_per_subject: int = 0
    url: str = ""
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        received = Received(
            {k.lower(): v for k, v in request.headers.items()}, await request.read()
        )
        self.requests.append(received)
        subject = received.subject
        self.in_flight += 1
        self.in_flight_by_subject[subject] += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        self.max_in_flight_per_subject = max(
            self.max_in_flight_per_subject, self.in_flight_by_subject[subject]
        )
        try:
            if self.hang:
                await self._release.wait()
            if self.gate is not None:
                await self.gate.wait()
            if self.busy_for is not None:
                received.status = 503
                return web.Response(status=503, headers={"Retry-After": self.busy_for})
            if self.redirect_to is not None:
                received.status = 307
                return web.Response(status=307, headers={"Location": self.redirect_to})
            status = 500 if len(self.requests) <= self.fail_first else 200
            received.status = status
            return web.Response(status=status, text="nope" if status == 500 else "ok")
        finally:
            self.in_flight -= 1
            self.in_flight_by_subject[subject] -= 1

    def delivered(self) -> list[str]:
        """Ids of the events this receiver accepted, in the order it accepted them."""
        return [r.event_id for r in self.requests if r.status == 200]


@asynccontextmanager
async def receiving(receiver: Receiver | None = None) -> AsyncIterator[Receiver]:
    receiver = receiver or Receiver()
    app = web.Application()
    app.router.add_post("/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    receiver.url = f"http://{host}:{port}/hook"
    try:
        yield receiver
    finally:
        receiver._release.set()
        await runner.cleanup()


# --- the platform around them ------------------------------------------------------------------


def hook_settings(settings: Settings, **extra: Any) -> Settings:
    values: dict[str, Any] = {
        "webhook_allowed_networks": "127.0.0.0/8,::1/128",
        "webhook_timeout_s": 10.0,
        "webhook_retry_base_s": 0.02,
        "webhook_retry_max_s": 0.1,
        "webhook_max_attempts": 10,
        "webhook_disable_after_failures": 1000,
        "webhook_disable_after_s": 0.0,
        "webhook_max_in_flight": CAP,
        "webhook_concurrency": 16,
    }
    return settings.model_copy(update=values | extra)


@pytest.fixture(scope="module")
async def api(runtime: Runtime, settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API as configured for these tests (webhooks may target loopback)."""
    rt = Runtime(hook_settings(settings), settings.nats_url or "")
    await rt.connect()
    transport = httpx.ASGITransport(app=create_app(rt))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c
    finally:
        await rt.close()


@asynccontextmanager
async def worker(settings: Settings, **extra: Any) -> AsyncIterator[Runtime]:
    """A webhooks worker process in miniature; leaving the block stops it."""
    runtime = Runtime(hook_settings(settings, **extra), settings.nats_url or "")
    await runtime.connect()
    attach(runtime, ["webhooks"])
    await runtime.start_consuming()
    try:
        yield runtime
    finally:
        await runtime.close()


@pytest.fixture
async def hooks(
    api: httpx.AsyncClient, admin_headers: dict[str, str]
) -> AsyncIterator[Callable[..., Any]]:
    """Create webhooks through the API; deleted after the test so later events skip them."""
    created: list[int] = []

    async def create(**body: Any) -> dict[str, Any]:
        response = await api.post(HOOKS, json=body, headers=admin_headers)
        assert response.status_code == 201, response.text
        hook: dict[str, Any] = response.json()
        created.append(hook["id"])
        return hook

    yield create
    for hook_id in created:
        await api.delete(f"{HOOKS}{hook_id}/", headers=admin_headers)


async def wait_for(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(0.02)


async def make_pools(
    api: httpx.AsyncClient, headers: dict[str, str], tag: str, count: int
) -> list[int]:
    ids = []
    for i in range(count):
        response = await api.post("/api/pool/", json={"name": f"wh-{tag}-{i}"}, headers=headers)
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


def created_ids(pool_ids: list[int]) -> set[str]:
    return {f"evt:pool:{p}:created:1" for p in pool_ids}


def signature_valid(secret: str, received: Received) -> bool:
    """What a receiver does: recompute HMAC-SHA256 over `<t>.` + the exact body."""
    parts = dict(p.split("=", 1) for p in received.headers["racksmith-signature"].split(","))
    expected = hmac.new(
        secret.encode(), f"{int(parts['t'])}.".encode() + received.body, hashlib.sha256
    ).hexdigest()
    return hmac.compare_digest(expected, parts["v1"])


async def logged_delivered(
    api: httpx.AsyncClient, headers: dict[str, str], hook_id: int, expected: set[str]
) -> None:
    """Wait until the delivery log records ``expected`` as delivered (a receiver may have
    answered before the worker wrote its answer down)."""
    async with asyncio.timeout(30):
        while not expected <= {
            d["event_id"] for d in await delivery_log(api, headers, hook_id, status="delivered")
        }:
            await asyncio.sleep(0.02)


async def delivery_log(
    api: httpx.AsyncClient, headers: dict[str, str], hook_id: int, **params: Any
) -> list[dict[str, Any]]:
    response = await api.get(f"{HOOKS}{hook_id}/deliveries/", params=params, headers=headers)
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    return results


# --- delivery ----------------------------------------------------------------------------------


async def test_failing_receiver_gets_every_event_once_in_effect_with_valid_signatures(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    """Acceptance: the first 3 deliveries fail; every event still arrives, each accepted once,
    every attempt carrying the event's own id and a valid signature."""
    async with receiving(Receiver(fail_first=3)) as receiver, worker(settings):
        hook = await hooks(name=f"flaky-{unique}", url=receiver.url, event_types=["pool.created"])
        pools = await make_pools(api, admin_headers, unique, 5)
        expected = created_ids(pools)
        await logged_delivered(api, admin_headers, hook["id"], expected)

    secret = hook["secret"]
    assert secret and len(secret) >= 32
    mine = [r for r in receiver.requests if r.event_id in expected]
    assert len(mine) == len(receiver.requests)  # nothing but the events it subscribed to
    assert sorted(receiver.delivered()) == sorted(expected)  # each accepted exactly once
    assert [r.status for r in receiver.requests].count(500) == 3
    for received in receiver.requests:
        assert signature_valid(secret, received)
        assert not signature_valid(secret + "x", received)
        assert received.headers["content-type"] == "application/cloudevents+json"
        event = json.loads(received.body)
        assert event["specversion"] == "1.0" and event["source"] == "/racksmith"
        assert event["type"] == "io.racksmith.pool.created"
        assert event["subject"] == f"pool/{event['data']['id']}"
    # A retry is the same delivery: same event id, same delivery id.
    delivery_ids: dict[str, set[str]] = {}
    for received in receiver.requests:
        delivery_ids.setdefault(received.event_id, set()).add(
            received.headers["racksmith-delivery"]
        )
    assert all(len(ids) == 1 for ids in delivery_ids.values())

    log = await delivery_log(api, admin_headers, hook["id"])
    assert {d["event_id"] for d in log} == expected
    assert {d["status"] for d in log} == {"delivered"}
    assert sum(d["attempts"] for d in log) == len(expected) + 3
    assert [d["id"] for d in log] == sorted((d["id"] for d in log), reverse=True)  # newest first
    assert all(str(d["id"]) in delivery_ids[d["event_id"]] for d in log)


async def test_one_entitys_events_arrive_in_order(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    """A failed event holds back the same entity's later events; never two at once per entity."""
    async with receiving(Receiver(fail_first=1)) as receiver, worker(settings):
        await hooks(
            name=f"order-{unique}", url=receiver.url, event_types=["pool.created", "pool.updated"]
        )
        (pool,) = await make_pools(api, admin_headers, unique, 1)
        for n in range(3):
            response = await api.patch(
                f"/api/pool/{pool}/", json={"description": f"v{n}"}, headers=admin_headers
            )
            assert response.status_code == 200
        await wait_for(lambda: len(receiver.delivered()) == 4)

    created = f"evt:pool:{pool}:created:1"
    assert [r.event_id for r in receiver.requests] == [
        created,  # answered 500
        created,
        *(f"evt:pool:{pool}:updated:{v}" for v in (2, 3, 4)),
    ]
    assert receiver.max_in_flight_per_subject == 1


async def test_hanging_receiver_delays_neither_other_webhooks_nor_the_platform(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    hanging = Receiver(hang=True)
    async with receiving(hanging), receiving() as healthy, worker(settings, webhook_timeout_s=60):
        await hooks(name=f"hang-{unique}", url=hanging.url, event_types=["pool.created"])
        await hooks(name=f"fine-{unique}", url=healthy.url, event_types=["pool.created"])
        pools = await make_pools(api, admin_headers, unique, 3)
        await wait_for(lambda: hanging.in_flight == CAP)
        # The hanging receiver holds all its slots; the platform and the other webhook go on.
        more = await make_pools(api, admin_headers, f"{unique}-more", 3)
        await wait_for(lambda: created_ids(pools + more) <= set(healthy.delivered()))
        assert not any(r.status for r in hanging.requests)  # still nothing answered there
        assert hanging.max_in_flight == CAP
        assert len(hanging.requests) == CAP


async def test_restarted_worker_loses_no_delivery(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    """Stop the worker while deliveries are in flight and events keep coming; a new worker
    delivers every event (at least once, always under its own id)."""
    async with receiving() as receiver:
        hook = await hooks(name=f"restart-{unique}", url=receiver.url)
        async with worker(settings):
            first = await make_pools(api, admin_headers, f"{unique}-a", 3)
            await wait_for(lambda: created_ids(first) <= set(receiver.delivered()))
            receiver.gate = asyncio.Event()  # from now on, requests wait
            second = await make_pools(api, admin_headers, f"{unique}-b", 3)
            await wait_for(lambda: receiver.in_flight == CAP)
        # Stopped mid-burst; events go on while no worker runs.
        cut_off = {r.event_id for r in receiver.requests if r.status is None}
        assert len(cut_off) == CAP
        third = await make_pools(api, admin_headers, f"{unique}-c", 3)
        receiver.gate.set()
        receiver.gate = None
        async with worker(settings):
            expected = created_ids(first + second + third)
            await logged_delivered(api, admin_headers, hook["id"], expected)

    assert {r.event_id for r in receiver.requests} == expected
    repeated = {e for e, n in Counter(r.event_id for r in receiver.requests).items() if n > 1}
    assert repeated == cut_off  # sent again: only what the stop cut off, under the same id
    assert sorted(receiver.delivered()) == sorted(expected)
    log = await delivery_log(api, admin_headers, hook["id"], event_type="io.racksmith.pool.created")
    assert {d["event_id"] for d in log} == expected
    assert {d["status"] for d in log} == {"delivered"}


async def test_binary_and_structured_modes(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    async with receiving() as binary, receiving() as structured, worker(settings):
        b = await hooks(
            name=f"bin-{unique}",
            url=binary.url,
            event_types=["pool.created"],
            content_mode="binary",
        )
        s = await hooks(name=f"str-{unique}", url=structured.url, event_types=["pool.created"])
        (pool,) = await make_pools(api, admin_headers, unique, 1)
        event_id = f"evt:pool:{pool}:created:1"
        await wait_for(
            lambda: event_id in binary.delivered() and event_id in structured.delivered()
        )

    (as_binary,) = [r for r in binary.requests if r.event_id == event_id]
    (as_structured,) = [r for r in structured.requests if r.event_id == event_id]
    envelope = json.loads(as_structured.body)
    headers = as_binary.headers
    assert headers["content-type"] == "application/json"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-id"] == envelope["id"] == event_id
    assert headers["ce-type"] == envelope["type"] == "io.racksmith.pool.created"
    assert headers["ce-source"] == envelope["source"]
    assert headers["ce-subject"] == envelope["subject"] == f"pool/{pool}"
    assert datetime.fromisoformat(headers["ce-time"]) == datetime.fromisoformat(envelope["time"])
    assert json.loads(as_binary.body) == envelope["data"]
    assert envelope["data"]["name"] == f"wh-{unique}-0"
    assert signature_valid(b["secret"], as_binary) and signature_valid(s["secret"], as_structured)


async def test_sustained_failure_disables_the_webhook_and_says_so(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    failing = Receiver(fail_first=10**6)
    async with (
        receiving(failing),
        receiving() as watcher,
        worker(settings, webhook_disable_after_failures=3) as rt,
    ):
        hook = await hooks(name=f"dying-{unique}", url=failing.url, event_types=["pool.created"])
        await hooks(name=f"watch-{unique}", url=watcher.url, event_types=["webhook.disabled"])
        (pool,) = await make_pools(api, admin_headers, unique, 1)
        await wait_for(lambda: bool(watcher.delivered()))

        # Disabled in the transaction of the 3rd failure: no 4th attempt was ever claimed.
        assert len(failing.requests) == 3
        current = (await api.get(f"{HOOKS}{hook['id']}/", headers=admin_headers)).json()
        assert current["active"] is False
        assert current["disabled_reason"].startswith("3 delivery attempts in a row failed since")
        assert current["disabled_reason"].endswith("the last: HTTP 500")
        (announced,) = watcher.requests
        event = json.loads(announced.body)
        assert event["type"] == "io.racksmith.webhook.disabled"
        assert event["subject"] == f"webhook/{hook['id']}"
        assert event["data"]["active"] is False
        assert event["data"]["disabled_reason"] == current["disabled_reason"]
        assert "secret" not in event["data"] and hook["secret"] not in announced.body.decode()
        # Only the URL's origin: a receiver's path or query may hold its own token.
        assert "url" not in event["data"]
        assert failing.url.startswith(event["data"]["origin"] + "/")
        published = await events(rt, f"racksmith.evt.webhook.{hook['id']}.disabled")
        assert [e["id"] for e in published] == [event["id"]]

        # Re-enabling clears the failure state; the held-back delivery then goes out.
        failing.fail_first = 0
        enabled = await api.patch(
            f"{HOOKS}{hook['id']}/", json={"active": True}, headers=admin_headers
        )
        assert enabled.status_code == 200
        body = enabled.json()
        assert body["active"] is True and body["disabled_reason"] is None
        assert body["consecutive_failures"] == 0 and body["disabled_at"] is None
        await wait_for(lambda: f"evt:pool:{pool}:created:1" in failing.delivered())


async def test_retry_after_is_honoured(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    async with (
        receiving(Receiver(busy_for="3600")) as receiver,
        worker(settings, webhook_retry_max_s=7200.0),
    ):
        hook = await hooks(name=f"busy-{unique}", url=receiver.url, event_types=["pool.created"])
        await make_pools(api, admin_headers, unique, 1)
        async with asyncio.timeout(30):
            while (
                not (log := await delivery_log(api, admin_headers, hook["id"]))
                or not log[0]["attempts"]
            ):
                await asyncio.sleep(0.02)
    (delivery,) = log
    assert delivery["status"] == "pending" and delivery["last_status_code"] == 503
    scheduled = datetime.fromisoformat(delivery["next_attempt_at"]) - datetime.fromisoformat(
        delivery["updated_at"]
    )
    # The jittered back-off here is at most 0.02 s: the wait is the receiver's.
    assert timedelta(seconds=3599) <= scheduled <= timedelta(seconds=3601)
    assert len(receiver.requests) == 1


async def test_dispatching_a_redelivered_event_again_is_a_no_op(
    runtime: Runtime, hooks: Callable[..., Any], unique: str
) -> None:
    hook = await hooks(name=f"dup-{unique}", url="http://127.0.0.1:9/", event_types=[])
    event = make_event("pool", 10**9, "created", version=unique, data={"id": 10**9})
    for _ in range(2):
        await dispatch.record(runtime.db, [(event, 42)])
    async with runtime.db.session() as session:
        rows = (
            await session.exec(
                select(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == hook["id"])
            )
        ).all()
    assert [(r.event_id, r.stream_sequence, r.status) for r in rows] == [(event.id, 42, "pending")]


async def test_the_documented_signature_check_accepts_real_deliveries(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    """docs/webhooks.md's `verify`, run verbatim on what a receiver really gets."""
    guide = (ROOT / "docs" / "webhooks.md").read_text()
    namespace: dict[str, Any] = {}
    exec(re.findall(r"```python\n(.+?)```", guide, re.DOTALL)[0], namespace)  # noqa: S102
    verify = namespace["verify"]
    async with receiving() as receiver, worker(settings):
        hook = await hooks(name=f"doc-{unique}", url=receiver.url)
        await api.post(f"{HOOKS}{hook['id']}/test/", headers=admin_headers)
    (received,) = receiver.requests
    header = received.headers["racksmith-signature"]
    assert verify(hook["secret"], header, received.body)
    assert not verify(hook["secret"], header, received.body + b" ")
    assert not verify("another-secret-entirely", header, received.body)
    assert not verify(hook["secret"], header, received.body, max_age_s=-1)  # a replay


# --- the test action, the log ------------------------------------------------------------------


async def test_test_action_sends_a_signed_test_event_and_logs_it(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    async with receiving() as receiver, worker(settings):
        hook = await hooks(name=f"test-{unique}", url=receiver.url, content_mode="binary")
        response = await api.post(f"{HOOKS}{hook['id']}/test/", headers=admin_headers)
        assert response.status_code == 200, response.text
        outcome = response.json()
        assert outcome["status"] == "delivered" and outcome["attempts"] == 1
        assert outcome["last_status_code"] == 200 and outcome["last_error"] is None
        (received,) = receiver.requests
        assert received.headers["ce-type"] == "io.racksmith.webhook.test"
        assert received.headers["ce-id"] == outcome["event_id"]
        assert received.headers["racksmith-delivery"] == str(outcome["id"])
        assert json.loads(received.body)["id"] == hook["id"]
        assert signature_valid(hook["secret"], received)

        receiver.fail_first = 10
        failed = (await api.post(f"{HOOKS}{hook['id']}/test/", headers=admin_headers)).json()
        assert failed["status"] == "failed" and failed["last_error"] == "HTTP 500"

    log = await delivery_log(api, admin_headers, hook["id"])
    assert [d["id"] for d in log] == [failed["id"], outcome["id"]]  # newest first
    only_failed = await delivery_log(api, admin_headers, hook["id"], status="failed")
    assert [d["id"] for d in only_failed] == [failed["id"]]
    page = (
        await api.get(f"{HOOKS}{hook['id']}/deliveries/?page=1&page_size=1", headers=admin_headers)
    ).json()
    assert (
        page["count"] == 2 and page["next"] and [d["id"] for d in page["results"]] == [failed["id"]]
    )
    # The test attempts do not count towards disabling.
    current = (await api.get(f"{HOOKS}{hook['id']}/", headers=admin_headers)).json()
    assert current["consecutive_failures"] == 0 and current["active"] is True
    missing = await api.get(f"{HOOKS}987654321/deliveries/", headers=admin_headers)
    assert missing.status_code == 404


async def test_finished_deliveries_are_pruned_after_the_retention(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    async with receiving() as receiver, worker(settings):
        hook = await hooks(name=f"prune-{unique}", url=receiver.url)
        await api.post(f"{HOOKS}{hook['id']}/test/", headers=admin_headers)
    retention = timedelta(days=settings.webhook_delivery_retention_days)
    now = datetime.now(UTC)
    await deliveries.prune(runtime.db, settings, now=now + retention - timedelta(hours=1))
    assert len(await delivery_log(api, admin_headers, hook["id"])) == 1
    await deliveries.prune(runtime.db, settings, now=now + retention + timedelta(hours=1))
    assert await delivery_log(api, admin_headers, hook["id"]) == []


# --- the resource ------------------------------------------------------------------------------


async def test_secret_is_shown_once_and_never_again(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    hook = await hooks(name=f"secret-{unique}", url="http://127.0.0.1:9/x")
    secret = hook["secret"]
    own = await hooks(name=f"own-{unique}", url="http://127.0.0.1:9/x", secret="s" * 32)
    assert own["secret"] is None  # a supplied secret is not echoed either
    path = f"{HOOKS}{hook['id']}/"
    responses = [
        await api.get(path, headers=admin_headers),
        await api.get(HOOKS, headers=admin_headers),
        await api.patch(path, json={"name": f"renamed-{unique}"}, headers=admin_headers),
        await api.put(
            path,
            json={"name": f"put-{unique}", "url": "http://127.0.0.1:9/y"},
            headers=admin_headers,
        ),
        await api.patch(path, json={"secret": "r" * 40}, headers=admin_headers),
    ]
    async with worker(settings):  # signs with it (port 9: refused)
        responses.append(await api.post(f"{path}test/", headers=admin_headers))
    for response in responses:
        assert response.status_code == 200, response.text
        assert secret not in response.text and '"secret"' not in response.text
        assert "r" * 40 not in response.text
    assert responses[-1].json()["last_error"].startswith("Cannot connect")
    put = responses[3].json()
    assert put["event_types"] == [] and put["content_mode"] == "structured"  # PUT reset them
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert "webhook.created" in logs
    assert secret not in logs and "s" * 32 not in logs and "r" * 40 not in logs
    async with runtime.db.session() as session:
        stored = (await session.exec(select(Webhook).where(col(Webhook.id) == hook["id"]))).one()
    assert secret not in stored.secret_encrypted and "r" * 40 not in stored.secret_encrypted
    assert runtime.credentials.decrypt(stored.secret_encrypted) == "r" * 40


async def test_crud_event_type_filters_and_listing(
    api: httpx.AsyncClient, admin_headers: dict[str, str], hooks: Callable[..., Any], unique: str
) -> None:
    hook = await hooks(
        name=f"crud-{unique}",
        url="http://127.0.0.1:9/x",
        event_types=["node.registered", "io.racksmith.node.registered", "pool.created"],
    )
    assert hook["event_types"] == ["io.racksmith.node.registered", "io.racksmith.pool.created"]
    listed = (await api.get(f"{HOOKS}?search=crud-{unique}", headers=admin_headers)).json()
    assert [h["id"] for h in listed["results"]] == [hook["id"]]
    inactive = await api.patch(
        f"{HOOKS}{hook['id']}/", json={"active": False}, headers=admin_headers
    )
    assert inactive.json()["active"] is False
    assert inactive.json()["disabled_reason"] == "Deactivated by admin."
    filtered = (
        await api.get(f"{HOOKS}?active=false&search=crud-{unique}", headers=admin_headers)
    ).json()
    assert filtered["count"] == 1
    deleted = await api.delete(f"{HOOKS}{hook['id']}/", headers=admin_headers)
    assert deleted.status_code == 204
    assert (await api.get(f"{HOOKS}{hook['id']}/", headers=admin_headers)).status_code == 404


async def test_only_superusers_manage_webhooks(
    api: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    user = {"username": f"wh-{unique}", "password": "a-long-password-1"}
    assert (await api.post("/api/users/", json=user, headers=admin_headers)).status_code == 201
    token = (await api.post("/api/token/", json=user)).json()["access"]
    headers = {"Authorization": f"Bearer {token}"}
    assert (await api.get(HOOKS, headers=headers)).status_code == 403
    assert (await api.post(HOOKS, json={}, headers=headers)).status_code == 403
    assert (await api.get(HOOKS)).status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "http://10.0.0.1/hook"}, "url"),
        ({"url": "http://169.254.169.254/latest/meta-data/"}, "url"),
        ({"url": "ftp://127.0.0.1/hook"}, "url"),
        ({"url": "http://user:pw@127.0.0.1/hook"}, "url"),
        ({"url": "not a url"}, "url"),
        ({"url": "http://127.0.0.1:99999/"}, "url"),
        ({"event_types": ["pool.exploded"]}, "event_types"),
        ({"content_mode": "telepathy"}, "content_mode"),
        ({"secret": "short"}, "secret"),
        ({"name": ""}, "name"),
    ],
)
async def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    body: dict[str, Any],
    field: str,
) -> None:
    async with runtime.db.session() as session:
        before = (await session.exec(select(func.count()).select_from(Webhook))).one()
    valid = {"name": "bad-input", "url": "http://127.0.0.1:9/hook"}
    response = await api.post(HOOKS, json=valid | body, headers=admin_headers)
    assert response.status_code == 400, response.text
    assert list(response.json()) == [field]
    async with runtime.db.session() as session:
        after = (await session.exec(select(func.count()).select_from(Webhook))).one()
    assert after == before


# --- SSRF ----------------------------------------------------------------------------------------


REFUSED_BY_DEFAULT = [
    ("10.96.0.1", "not globally routable"),  # a Kubernetes service address (the API server)
    ("192.168.1.10", "not globally routable"),
    ("100.64.0.1", "not globally routable"),  # CGNAT
    ("100.100.100.200", "cloud metadata"),  # Alibaba's metadata service, inside CGNAT
    ("169.254.169.254", "link-local"),
    ("168.63.129.16", "cloud metadata"),  # Azure's, a public-looking address
    ("192.0.0.192", "cloud metadata"),
    ("127.0.0.1", "loopback"),
    ("0.0.0.0", "this host"),  # noqa: S104
    ("224.0.0.1", "multicast"),
    ("fd00:ec2::254", "cloud metadata"),  # AWS's IPv6 metadata service
    ("fd12:3456::1", "not globally routable"),  # unique-local
    ("fe80::1", "link-local"),
    ("::1", "loopback"),
    ("::ffff:10.0.0.1", "IPv4-mapped not globally routable"),
    ("::ffff:169.254.169.254", "IPv4-mapped link-local"),
    ("2002:c0a8:10a::1", "embedding 192.168.1.10"),  # 6to4
    ("2002:a9fe:a9fe::1", "embedding 169.254.169.254"),
    ("64:ff9b::a00:1", "embedding 10.0.0.1"),  # NAT64
    ("64:ff9b::7f00:1", "embedding 127.0.0.1"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
]


def _url(address: str) -> str:
    return f"http://[{address}]/" if ":" in address else f"http://{address}/"


@pytest.mark.parametrize(("address", "why"), REFUSED_BY_DEFAULT)
async def test_by_default_only_globally_routable_targets(
    client: httpx.AsyncClient, admin_headers: dict[str, str], address: str, why: str
) -> None:
    """The suite's default API has no RACKSMITH_WEBHOOK_ALLOWED_NETWORKS: the default rule."""
    response = await client.post(
        HOOKS, json={"name": "ssrf", "url": _url(address)}, headers=admin_headers
    )
    assert response.status_code == 400, address
    (message,) = response.json()["url"]
    assert why in message and "RACKSMITH_WEBHOOK_ALLOWED_NETWORKS" in message


# Webhook receivers and artifact sources follow one rule, each with its own allowlist.
DESTINATIONS = [WEBHOOK_RECEIVERS, ARTIFACT_SOURCES]


def _policy(destination: Destination, allowed: str = "") -> TargetPolicy:
    return TargetPolicy.from_settings(Settings(**{destination.setting: allowed}), destination)


@pytest.mark.parametrize("destination", DESTINATIONS, ids=lambda d: d.setting)
def test_each_destination_refuses_the_same_addresses_by_default(destination: Destination) -> None:
    policy = _policy(destination)
    for address, why in REFUSED_BY_DEFAULT:
        with pytest.raises(TargetError, match=destination.variable) as refused:
            policy.check(address, [ipaddress.ip_address(address)])
        assert why in str(refused.value), address


@pytest.mark.parametrize("destination", DESTINATIONS, ids=lambda d: d.setting)
@pytest.mark.parametrize(
    "address", ["8.8.8.8", "2606:4700::1111", "2002:808:808::1", "64:ff9b::808:808"]
)
def test_globally_routable_targets_are_allowed(destination: Destination, address: str) -> None:
    assert _policy(destination).refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize("destination", DESTINATIONS, ids=lambda d: d.setting)
def test_the_allowlist_opens_internal_networks_but_not_the_host_or_metadata(
    destination: Destination,
) -> None:
    policy = _policy(destination, "10.0.0.0/8,0.0.0.0/0")
    for allowed in ("10.1.2.3", "64:ff9b::a00:1", "::ffff:10.0.0.1", "192.168.1.1"):
        assert policy.refusal(ipaddress.ip_address(allowed)) is None, allowed
    for refused in ("127.0.0.1", "169.254.169.254", "100.100.100.200", "::ffff:127.0.0.1"):
        assert policy.refusal(ipaddress.ip_address(refused)) is not None, refused
    local = _policy(destination, "127.0.0.1/32")
    assert local.refusal(ipaddress.ip_address("127.0.0.1")) is None
    assert local.refusal(ipaddress.ip_address("127.0.0.2")) == "loopback"
    # One destination's allowlist opens nothing for the other.
    other = next(d for d in DESTINATIONS if d is not destination)
    settings = Settings(**{other.setting: "10.0.0.0/8"})
    internal = ipaddress.ip_address("10.1.2.3")
    assert TargetPolicy.from_settings(settings, destination).refusal(internal) is not None


@asynccontextmanager
async def banner_server(banner: bytes) -> AsyncIterator[str]:
    """A service that is not HTTP: it greets with a banner and hangs up."""

    async def greet(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(banner)
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(greet, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        server.close()
        await server.wait_closed()


async def test_what_the_target_answers_never_reaches_the_delivery_log(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    """A non-HTTP port echoing its banner, an error page with internal details: the log says
    the status code or the class of error, nothing the target sent."""
    secret = "SSH-2.0-OpenSSH_9.6 internal-host-db01 key=hunter2"
    async with banner_server(f"{secret}\r\n".encode()) as url, worker(settings):
        hook = await hooks(name=f"banner-{unique}", url=url)
        outcome = (await api.post(f"{HOOKS}{hook['id']}/test/", headers=admin_headers)).json()
    assert outcome["status"] == "failed" and outcome["last_status_code"] is None
    assert "hunter2" not in outcome["last_error"] and "SSH" not in outcome["last_error"]

    async def leaky(_: web.Request) -> web.Response:
        return web.Response(status=500, text=secret)

    app = web.Application()
    app.router.add_post("/{tail:.*}", leaky)
    async with serving(app) as base, worker(settings):
        hook = await hooks(name=f"page-{unique}", url=f"{base}/")
        page = (await api.post(f"{HOOKS}{hook['id']}/test/", headers=admin_headers)).json()
    assert page["last_status_code"] == 500 and page["last_error"] == "HTTP 500"


async def test_the_test_action_is_sent_by_a_webhooks_worker_never_by_the_api(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    async with receiving() as receiver:
        hook = await hooks(name=f"via-worker-{unique}", url=receiver.url)
        alone = await api.post(f"{HOOKS}{hook['id']}/test/", headers=admin_headers)
        assert alone.status_code == 503, alone.text
        assert "webhooks worker" in alone.json()["detail"]
        assert receiver.requests == []
        # The worker applies its own target policy: one that refuses loopback sends nothing.
        async with worker(settings, webhook_allowed_networks=""):
            refused = await api.post(f"{HOOKS}{hook['id']}/test/", headers=admin_headers)
        assert refused.status_code == 200
        assert refused.json()["last_error"].startswith("127.0.0.1 is refused: loopback")
        assert receiver.requests == []
        async with worker(settings):
            sent = await api.post(f"{HOOKS}{hook['id']}/test/", headers=admin_headers)
        assert sent.status_code == 200 and sent.json()["status"] == "delivered"
        assert len(receiver.requests) == 1


async def test_targets_are_checked_again_when_delivering(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    """Saved while allowed; by delivery time the name (or address) is outside the allowed
    networks — as after DNS rebinding — so nothing is sent."""
    async with receiving() as receiver:
        port = receiver.url.split(":")[2].split("/")[0]
        by_name = await hooks(
            name=f"name-{unique}", url=f"http://localhost:{port}/", event_types=["pool.created"]
        )
        by_address = await hooks(
            name=f"addr-{unique}", url=receiver.url, event_types=["pool.created"]
        )
        async with worker(settings, webhook_allowed_networks="127.0.0.2/32"):
            (pool,) = await make_pools(api, admin_headers, unique, 1)

            async def attempted(hook: dict[str, Any]) -> dict[str, Any] | None:
                log = await delivery_log(api, admin_headers, hook["id"])
                return log[0] if log and log[0]["attempts"] else None

            async with asyncio.timeout(30):
                while not (await attempted(by_name) and await attempted(by_address)):
                    await asyncio.sleep(0.05)
            name_attempt, address_attempt = await attempted(by_name), await attempted(by_address)
    assert receiver.requests == []
    assert name_attempt is not None and address_attempt is not None
    assert name_attempt["event_id"] == f"evt:pool:{pool}:created:1"
    assert name_attempt["last_error"].startswith("localhost resolves to ")
    assert "refused addresses: 127.0.0.1 (loopback)" in name_attempt["last_error"]
    assert address_attempt["last_error"].startswith("127.0.0.1 is refused: loopback")
    assert name_attempt["last_status_code"] is None


async def test_redirects_are_not_followed(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    hooks: Callable[..., Any],
    unique: str,
) -> None:
    async with (
        receiving() as target,
        receiving(Receiver(redirect_to="")) as redirecting,
        worker(settings),
    ):
        redirecting.redirect_to = target.url
        hook = await hooks(name=f"redirect-{unique}", url=redirecting.url)
        outcome = (await api.post(f"{HOOKS}{hook['id']}/test/", headers=admin_headers)).json()
    assert outcome["status"] == "failed" and outcome["last_status_code"] == 307
    assert outcome["last_error"].startswith("HTTP 307: a redirect, refused")
    assert target.url not in outcome["last_error"]
    assert len(redirecting.requests) == 1 and target.requests == []


async def test_resolver_refuses_names_outside_the_allowed_networks() -> None:
    refusing = GuardedResolver(
        TargetPolicy.from_settings(
            Settings(webhook_allowed_networks="10.0.0.0/8"), WEBHOOK_RECEIVERS
        )
    )
    allowing = GuardedResolver(
        TargetPolicy.from_settings(
            Settings(webhook_allowed_networks="127.0.0.0/8,::1/128"), WEBHOOK_RECEIVERS
        )
    )
    try:
        with pytest.raises(TargetRefusedError, match="refused addresses"):
            await refusing.resolve("localhost", 80)
        assert [r["host"] for r in await allowing.resolve("localhost", 80)] == ["127.0.0.1"]
    finally:
        await refusing.close()
        await allowing.close()


# --- wiring --------------------------------------------------------------------------------------


async def test_the_webhooks_consumer_is_declared_on_the_events(runtime: Runtime) -> None:
    assert runtime.nats is not None
    js = runtime.nats.jetstream()
    info = await js.consumer_info(EVENTS_STREAM, WEBHOOKS.durable)
    assert info.config.filter_subject == "racksmith.evt.>"
    assert info.config.deliver_policy == DeliverPolicy.NEW
    assert info.config.max_ack_pending == WEBHOOKS.max_ack_pending
    assert info.config.max_deliver == -1
    await streams.declare(js, runtime.settings)  # again: a no-op, not an error


def test_webhooks_is_a_worker_kind() -> None:
    assert build_parser().parse_args(["worker", "webhooks"]).kind == "webhooks"
