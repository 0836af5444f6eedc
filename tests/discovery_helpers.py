"""Helpers for tests that run discovery end to end."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from bmclab import Lab
from services.workers import attach
from shared.core.settings import Settings
from shared.platform.runtime import Runtime

ROOT = Path(__file__).resolve().parents[1]

# Faults that make an address "not a Redfish service": discovery must not report them.
NOT_REDFISH = {
    "nonredfish",
    "hang",
    "tlsfail",
    "malformed",
    "reset",
    "redirect",
    "oversized",
    "drip",
}


def redfish_addresses(lab: Lab) -> set[str]:
    return {
        e.address
        for e in lab.manifest
        if e.fault is None or e.fault.split(":")[0] not in NOT_REDFISH
    }


@asynccontextmanager
async def scanner(
    settings: Settings, kinds: tuple[str, ...] = ("scanner",)
) -> AsyncIterator[Runtime]:
    """Workers of ``kinds`` in this process, on the test broker and database."""
    runtime = Runtime(settings, settings.nats_url or "")
    await runtime.connect()
    attach(runtime, list(kinds))
    await runtime.start_consuming()
    try:
        yield runtime
    finally:
        await runtime.close()


async def scan_to_completion(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    scan_range_id: int,
    *,
    timeout: float = 90.0,
) -> dict[str, Any]:
    """The guide's steps 2 and 3: run the scan, poll until the range is no longer scanning."""
    started = await client.post(
        "/api/node_discovery/run_scan/", json={"scan_ranges": [scan_range_id]}, headers=headers
    )
    assert started.status_code == 202, started.text
    async with asyncio.timeout(timeout):
        while True:
            await asyncio.sleep(0.2)
            body: dict[str, Any] = (
                await client.get(
                    f"/api/node_discovery/scan_range/{scan_range_id}/", headers=headers
                )
            ).json()
            if body["status"] != "scanning":
                return body


async def nodes_of_range(
    client: httpx.AsyncClient, headers: dict[str, str], scan_range_id: int
) -> list[dict[str, Any]]:
    body = (await client.get(f"/api/node/?scan_range={scan_range_id}", headers=headers)).json()
    nodes: list[dict[str, Any]] = body["results"]
    return nodes


def mockup_dirs() -> list[Path]:
    """The recorded BMC trees in ../shared/bmc-mockups (read in place, never copied)."""
    root = Path(os.environ.get("RACKSMITH_BMC_MOCKUPS", ROOT.parent / "shared" / "bmc-mockups"))
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "redfish" / "v1").is_dir())


async def create_profile(
    client: httpx.AsyncClient, headers: dict[str, str], credentials: list[tuple[str, str]]
) -> int:
    """The guide's step 2: an auth profile with credentials, tried in this order."""
    profile = await client.post(
        "/api/node_discovery/auth_profile/",
        json={"node_classification": "BMC lab", "bmc": "redfish"},
        headers=headers,
    )
    profile_id: int = profile.json()["id"]
    for username, password in credentials:
        added = await client.post(
            f"/api/node_discovery/auth_profile/{profile_id}/credentials/",
            json={"username": username, "password": password},
            headers=headers,
        )
        assert added.status_code == 201
    return profile_id


async def discover(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    name: str,
    ip_from: str,
    ip_to: str,
    port: int = 8443,
) -> dict[str, Any]:
    created = await client.post(
        "/api/node_discovery/scan_range/",
        json={"name": name, "ip_from": ip_from, "ip_to": ip_to, "ports": [port]},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    return await scan_to_completion(client, headers, created.json()["id"])


async def events(runtime: Runtime, subject: str) -> list[dict[str, Any]]:
    """Every event on ``subject`` so far, replayed from the stream in order.

    Read until the consumer has nothing pending, not until a quiet moment: on a loaded machine
    a pause between two messages is no sign that the last one was read. Events already
    committed but not yet relayed (their owning component relays them once woken, or at its
    next sweep) are events so far too: ``runtime`` relays what it may first.
    """
    assert runtime.nats is not None
    await runtime.outbox.relay(sweep=True)
    subscription = await runtime.nats.jetstream().subscribe(subject, ordered_consumer=True)
    found: list[dict[str, Any]] = []
    try:
        while True:
            # Done when the server has nothing left and we hold everything it delivered.
            info = await subscription.consumer_info()
            if info.num_pending == 0 and len(found) >= (info.delivered.consumer_seq or 0):
                break
            while True:
                message = await subscription.next_msg(timeout=30)
                found.append(json.loads(message.data))
                if message.metadata.num_pending == 0:
                    break
    finally:
        await subscription.unsubscribe()
    return found
