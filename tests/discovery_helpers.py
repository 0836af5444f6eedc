"""Helpers for tests that run discovery end to end."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from bmclab import Lab
from services.workers import attach
from shared.runtime import Runtime
from shared.settings import Settings

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
async def scanner(settings: Settings) -> AsyncIterator[Runtime]:
    """A scanner worker in this process, on the test broker and database."""
    runtime = Runtime(settings, settings.nats_url or "")
    await runtime.connect()
    attach(runtime, ["scanner"])
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
