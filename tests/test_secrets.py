"""BMC passwords never leave the encrypted column: not in API responses, logs, events, error
messages or the database file — checked by searching all of them after a full run."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from bmclab import Lab, LabConfig
from shared.core.settings import Settings
from shared.models import metadata
from shared.platform.runtime import Runtime
from tests.discovery_helpers import create_profile, discover, events, scanner
from tests.lab_net import LAB_NET

pytestmark = [pytest.mark.broker, pytest.mark.lab]

SECRET = "Never-Show-Me-7x!"
WRONG = "Wrong-But-Secret-9y"


async def test_passwords_appear_nowhere_after_a_full_run(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    settings: Settings,
    runtime: Runtime,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []

    async def call(method: str, url: str, **kwargs: object) -> httpx.Response:
        response = await client.request(method, url, headers=admin_headers, **kwargs)  # type: ignore[arg-type]
        seen.append(response.text)
        return response

    fast = settings.model_copy(update={"scan_connect_timeout_s": 0.5, "scan_probe_timeout_s": 2.0})
    config = LabConfig(
        count=3, network=f"{LAB_NET}.185.0/24", latency="0", password=SECRET, faults="badcreds@2"
    )
    async with Lab(config), scanner(fast, ("scanner", "registrar")):
        profile = await create_profile(client, admin_headers, [("root", WRONG), ("root", SECRET)])
        done = await discover(
            client, admin_headers, "secrets", f"{LAB_NET}.185.1", f"{LAB_NET}.185.3"
        )
        nodes = (await call("GET", f"/api/node/?scan_range={done['id']}")).json()["results"]
        await call(
            "POST",
            "/api/node/register/",
            json={"nodes": [n["id"] for n in nodes], "auth_profile": profile},
        )
        for node in nodes:
            await call("GET", f"/api/node/{node['id']}/")
        await call("GET", f"/api/node_discovery/auth_profile/{profile}/")
        await call("GET", f"/api/node_discovery/auth_profile/{profile}/credentials/")
        await call("GET", "/api/node_discovery/auth_profile/")
    assert any('"status":"error"' in body for body in seen), "a failed login is part of the run"
    assert any('"status":"registered"' in body for body in seen)

    published = [str(event) for event in await events(runtime, "racksmith.evt.>")]
    async with runtime.db.engine.connect() as conn:
        rows = [
            str(row)
            for table in metadata.sorted_tables
            for row in (await conn.execute(text(f'SELECT * FROM "{table.name}"'))).all()  # noqa: S608
        ]
    files = b""
    if runtime.settings.effective_database_url.startswith("sqlite"):
        database = Path(runtime.settings.effective_database_url.split("///", 1)[1])
        files = b"".join(p.read_bytes() for p in database.parent.glob(database.name + "*"))
    captured = capsys.readouterr()
    logs = captured.out + captured.err + caplog.text
    assert "registration.done" in logs or "registration" in logs

    for secret in (SECRET, WRONG):
        assert not [body for body in seen if secret in body], "API response"
        assert not [event for event in published if secret in event], "event"
        assert not [row for row in rows if secret in row], "database row"
        assert secret.encode() not in files, "database file"
        assert secret not in logs, "log output"
