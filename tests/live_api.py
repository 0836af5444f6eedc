"""A running ``racksmith up --lab`` with the guide's data in place, for tests that talk to the API
as outside clients do (a generated client, a schema fuzzer): real HTTP, a real nats-server, a
real database, real HTTPS lab BMCs."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.lab_net import LAB_NET
from tests.processes import Up

ADMIN_PASSWORD = "live-admin-1"
NETWORK = f"{LAB_NET}.87"
# A loopback address where nothing listens: webhook tests fail at once (refused) and touch nothing.
HOOK_ADDRESS = f"{NETWORK}.254"
LAB_SIZE = 6


@dataclass(frozen=True)
class LiveApi:
    up: Up
    scan_range: dict[str, Any]
    credentials: dict[str, str]
    token: str

    @property
    def url(self) -> str:
        return self.up.url

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def start(state_dir: Path) -> Iterator[LiveApi]:
    """Start the platform with a lab of Dell/HPE/Supermicro/OpenBMC BMCs; stop it after."""
    up = Up(
        state_dir,
        *("--lab", str(LAB_SIZE), "--lab-network", f"{NETWORK}.0/24", "--lab-latency", "0"),
        env={
            "RACKSMITH_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "RACKSMITH_TOKEN_RATE_LIMIT": "100000/minute",
            # What a fuzzer may scan or call back: the lab, nothing else.
            "RACKSMITH_SCAN_ALLOWED_NETWORKS": f"{NETWORK}.0/24",
            "RACKSMITH_SCAN_MAX_ADDRESSES": "256",
            "RACKSMITH_WEBHOOK_ALLOWED_NETWORKS": f"{HOOK_ADDRESS}/32",
            "RACKSMITH_WEBHOOK_TIMEOUT_S": "2",
            "RACKSMITH_REGISTER_WAIT_S": "20",
        },
    )
    try:
        scan_range = json.loads(_banner_value(up.banner, "scan range"))
        credentials = json.loads(_banner_value(up.banner, "credentials"))
        token = httpx.post(
            f"{up.url}/api/token/", json={"username": "admin", "password": ADMIN_PASSWORD}
        ).json()["access"]
        yield LiveApi(up, scan_range, credentials, token)
    finally:
        assert up.stop() == 0


def _banner_value(banner: str, label: str) -> str:
    found = re.search(rf"{label}:\s+(\{{.*\}})", banner)
    assert found, banner
    return found.group(1)


def put_data_in_place(live: LiveApi) -> dict[str, int]:
    """The guide's steps with plain HTTP: a profile with credentials, a scanned range, every
    node registered, a pool holding servers and a switch; plus a user, a webhook, a firmware
    binary with a baseline, an OS image and a power job. Returns
    one id per path parameter name (``pool_id``, ``server_id``, …)."""
    with httpx.Client(base_url=live.url, headers=live.headers, timeout=60) as http:

        def made(path: str, body: dict[str, Any], accepted: tuple[int, ...] = (200, 201)) -> int:
            response = http.post(path, json=body)
            assert response.status_code in accepted, (path, response.text)
            made_id: int = response.json()["id"]
            return made_id

        profile = made(
            "/api/node_discovery/auth_profile/",
            {"node_classification": "live lab", "bmc": "redfish"},
        )
        credential = made(
            f"/api/node_discovery/auth_profile/{profile}/credentials/", live.credentials
        )
        scan = made("/api/node_discovery/scan_range/", {**live.scan_range, "name": "live data"})
        http.post("/api/node_discovery/run_scan/", json={"scan_ranges": [scan]}).raise_for_status()
        wait_until_scanned(http, scan)
        nodes = [n["id"] for n in http.get(f"/api/node/?scan_range={scan}").json()["results"]]
        registered = http.post(
            "/api/node/register/", json={"nodes": nodes, "auth_profile": profile}
        ).json()
        servers = [s for r in registered["results"] for s in r["servers"]]
        pool = made("/api/pool/", {"name": "live pool", "group": 1})
        http.post(f"/api/pool/{pool}/assign_servers/", json={"servers": servers[:2]})
        switch = made("/api/switch/", {"name": "live switch", "resource_pool": pool})
        # A job (finished, or still running: 202).
        job = made(f"/api/server/{servers[-1]}/power/", {"action": "on"}, (200, 202))
        user = made("/api/users/", {"username": "live-operator", "password": "password-123"})
        webhook = made(
            "/api/webhooks/", {"name": "live hook", "url": f"https://{HOOK_ADDRESS}:9/hook"}
        )
        firmware = uploaded(
            http,
            "/api/firmware/",
            ("BIOS_live.bin", b"live firmware"),
            {"name": "live BIOS", "firmware_type": "BIOS", "version": "1.0.0"},
        )
        baseline = made(
            "/api/firmware_baseline/",
            {"name": "live baseline", "firmware": [firmware], "resource_pool": pool},
        )
        os_image = uploaded(
            http,
            "/api/os/",
            ("live.iso", b"live image"),
            {"name": "live OS", "arch": "x86_64", "os_family": "linux"},
        )
    return {
        "profile_id": profile,
        "credential_id": credential,
        "scan_range_id": scan,
        "node_id": nodes[0],
        "server_id": servers[0],
        "pool_id": pool,
        "switch_id": switch,
        "group_id": 1,
        "user_id": user,
        "webhook_id": webhook,
        "firmware_id": firmware,
        "baseline_id": baseline,
        "os_image_id": os_image,
        "job_id": job,
    }


def uploaded(http: httpx.Client, path: str, file: tuple[str, bytes], fields: dict[str, str]) -> int:
    """A catalog entry added by a multipart upload (201 with its id)."""
    response = http.post(path, files={"file": file}, data=fields)
    assert response.status_code == 201, (path, response.text)
    entry_id: int = response.json()["id"]
    return entry_id


def wait_until_scanned(http: httpx.Client, scan_range: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if http.get(f"/api/node_discovery/scan_range/{scan_range}/").json()["status"] != (
            "scanning"
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"scan range {scan_range} still scanning after {timeout} s")
