"""The watchdog: a job past its deadline, a scan range stuck in ``scanning`` and a node stuck in
``registering`` (work and error hook both lost, as in a database outage) are failed with a
reason and their events — once, however many replicas sweep at the same time; a job whose tick
message went missing is woken with a new one. No jobs worker runs in this module."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from sqlmodel import col, select, update

from services.jobs.watchdog import sweep
from shared.core.clock import utcnow
from shared.models import Job, JobState, Node, NodeStatus, ScanRange, ScanStatus, Server
from shared.platform.runtime import Runtime
from tests.discovery_helpers import events
from tests.pool_helpers import make_servers

pytestmark = [pytest.mark.broker]

LONG_AGO = timedelta(hours=5)


async def _job(
    client: httpx.AsyncClient, headers: dict[str, str], server: Server
) -> dict[str, Any]:
    response = await client.post(
        f"/api/server/{server.id}/power/", json={"action": "on"}, headers=headers
    )
    assert response.status_code == 202, response.text
    job: dict[str, Any] = response.json()
    return job


def _power_jobs(family: str) -> float:
    """This process's count of power jobs in ``racksmith_job_<family>`` (failed ones for the
    jobs' total)."""
    name = f"racksmith_job_{family}" if family != "total" else "racksmith_jobs_total"
    labels = {"kind": "power"} | ({"state": "failed"} if family == "total" else {})
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _set(runtime: Runtime, model: Any, row_id: int, **values: Any) -> None:
    async with runtime.db.session() as session:
        await session.exec(update(model).where(col(model.id) == row_id).values(**values))
        await session.commit()


async def test_a_job_past_its_deadline_is_failed_once_with_a_reason(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    server, other = await make_servers(runtime, "watchdog", 2)
    job = await _job(client, admin_headers, server)
    stepping = await _job(client, admin_headers, other)
    now = utcnow()
    await _set(runtime, Job, job["id"], deadline_at=now - LONG_AGO)
    # A step that waits past its own deadline fails with the step's error_code.
    await _set(
        runtime,
        Job,
        stepping["id"],
        state=JobState.waiting,
        step="await_power",
        step_deadline_at=now - LONG_AGO,
        step_expiry_code="power_state_timeout",
    )
    deadline_failures, failures = _power_jobs("deadline_failures_total"), _power_jobs("total")
    # Two replicas sweeping at once.
    first, second = await asyncio.gather(sweep(runtime), sweep(runtime))
    failed = sorted(first.jobs_failed + second.jobs_failed)
    assert failed == sorted([job["id"], stepping["id"]])

    body = (await client.get(f"/api/job/{job['id']}/", headers=admin_headers)).json()
    assert body["state"] == "failed" and body["error_code"] == "deadline_exceeded"
    assert "watchdog" in body["error"] and body["finished_at"] is not None
    body = (await client.get(f"/api/job/{stepping['id']}/", headers=admin_headers)).json()
    assert body["error_code"] == "power_state_timeout" and "await_power" in body["error"]
    for server_id in (server.id, other.id):
        shown = (await client.get(f"/api/server/{server_id}/", headers=admin_headers)).json()
        assert shown["locked_by"] is None
    for job_id in (job["id"], stepping["id"]):
        assert len(await events(runtime, f"racksmith.evt.job.{job_id}.failed")) == 1
    # Counted once each, as failed and as failed for a deadline.
    assert _power_jobs("deadline_failures_total") == deadline_failures + 2
    assert _power_jobs("total") == failures + 2
    # The next job on the server starts (the active-job slot was freed).
    assert (await _job(client, admin_headers, server))["state"] == "pending"


async def test_a_job_whose_tick_went_missing_is_woken(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    (server,) = await make_servers(runtime, "wake", 1)
    job = await _job(client, admin_headers, server)
    await _set(runtime, Job, job["id"], next_tick_at=utcnow() - LONG_AGO)
    swept = await sweep(runtime)
    assert swept.jobs_woken == [job["id"]] and swept.jobs_failed == []
    async with runtime.db.session() as session:
        row = await session.get(Job, job["id"])
        assert row is not None and row.ticket == 2 and row.state == JobState.pending
    assert runtime.nats is not None
    js = runtime.nats.jetstream()
    tick = await js.get_last_msg("RACKSMITH_COMMANDS", "racksmith.cmd.job.tick")
    assert tick.headers and tick.headers["Nats-Msg-Id"] == f"job:{job['id']}:tick:2"
    # Not woken again while its new tick is not overdue.
    assert job["id"] not in (await sweep(runtime)).jobs_woken


async def test_cancel_before_a_worker_takes_the_job(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    """No jobs worker: the job is pending, and a cancel ends it at once."""
    (server,) = await make_servers(runtime, "pending", 1)
    job = await _job(client, admin_headers, server)
    cancelled = await client.post(f"/api/job/{job['id']}/cancel/", headers=admin_headers)
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "cancelled" and cancelled.json()["started_at"] is None
    shown = (await client.get(f"/api/server/{server.id}/", headers=admin_headers)).json()
    assert shown["locked_by"] is None
    assert len(await events(runtime, f"racksmith.evt.job.{job['id']}.cancelled")) == 1


async def test_a_scan_range_stuck_in_scanning_is_failed(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    created = await client.post(
        "/api/node_discovery/scan_range/",
        json={"name": "stuck", "ip_from": "198.18.5.1", "ip_to": "198.18.5.4", "ports": [443]},
        headers=admin_headers,
    )
    range_id = created.json()["id"]
    # As a run whose chunk work and error hook both died with the database.
    await _set(
        runtime,
        ScanRange,
        range_id,
        status=ScanStatus.scanning,
        run=1,
        last_scan_started_at=utcnow() - LONG_AGO,
    )
    first, second = await asyncio.gather(sweep(runtime), sweep(runtime))
    assert first.scan_ranges_failed + second.scan_ranges_failed == [range_id]
    body = (
        await client.get(f"/api/node_discovery/scan_range/{range_id}/", headers=admin_headers)
    ).json()
    assert body["status"] == "error" and "RACKSMITH_SCAN_DEADLINE_S" in body["last_error"]
    assert len(await events(runtime, f"racksmith.evt.scan_range.{range_id}.failed")) == 1


async def test_a_node_stuck_in_registering_is_failed(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    async with runtime.db.session() as session:
        # One requested long ago, one just now.
        node, fresh = (
            Node(
                ip=f"198.18.6.{n}",
                port=443,
                url=f"https://198.18.6.{n}",
                status=NodeStatus.registering,
                registration=1,
                registration_started_at=utcnow() - age,
            )
            for n, age in ((1, LONG_AGO), (2, timedelta(0)))
        )
        session.add_all([node, fresh])
        await session.commit()
    first, second = await asyncio.gather(sweep(runtime), sweep(runtime))
    assert first.nodes_failed + second.nodes_failed == [node.id]
    body = (await client.get(f"/api/node/{node.id}/", headers=admin_headers)).json()
    assert body["status"] == "error" and "RACKSMITH_REGISTER_DEADLINE_S" in body["error"]
    assert len(await events(runtime, f"racksmith.evt.node.{node.id}.error")) == 1
    async with runtime.db.session() as session:
        still = (await session.exec(select(Node.status).where(col(Node.id) == fresh.id))).one()
    assert still == NodeStatus.registering
