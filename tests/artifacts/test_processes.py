"""The artifact server as operators run it: beside the API in ``racksmith up``, and on its own as
``racksmith artifacts`` (production), both serving a grant made for an uploaded file."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from shared.artifacts import grants
from shared.core.db import Database
from shared.core.settings import Settings
from shared.models import FirmwareBinary
from shared.platform.natsserver import free_port
from tests.processes import RACKSMITH, Up, racksmith_env

pytestmark = [pytest.mark.slow]

PASSWORD = "artifact-admin-1"


async def _grant(database_url: str, firmware_id: int, port: int) -> str:
    db = Database(database_url)
    try:
        async with db.session() as session:
            entry = await session.get(FirmwareBinary, firmware_id)
            assert entry is not None
            url = grants.grant(
                session,
                Settings(artifact_port=port),
                entry.artifact,
                "cli test",
                timedelta(hours=1),
            )
            await session.commit()
    finally:
        await db.dispose()
    return url


def test_up_serves_artifacts_and_so_does_racksmith_artifacts(tmp_path: Path) -> None:
    payload = os.urandom(200_000)
    up = Up(tmp_path, env={"RACKSMITH_ADMIN_PASSWORD": PASSWORD})
    try:
        match = re.search(r"artifacts:\s+(http://\S+)/", up.banner)
        assert match, up.banner
        artifact_url = match.group(1)
        token = httpx.post(
            f"{up.url}/api/token/", json={"username": "admin", "password": PASSWORD}
        ).json()["access"]
        created = httpx.post(
            f"{up.url}/api/firmware/",
            headers={"Authorization": f"Bearer {token}"},
            files={"file": ("bios.bin", payload)},
            data={"name": "bios", "firmware_type": "BIOS", "version": "1.0"},
        )
        assert created.status_code == 201, created.text
        database_url = f"sqlite+aiosqlite:///{(tmp_path / 'racksmith.db').resolve()}"
        port = int(artifact_url.rsplit(":", 1)[1])
        url = asyncio.run(_grant(database_url, created.json()["id"], port))
        assert url.startswith(artifact_url)
        ranged = httpx.get(url, headers={"Range": "bytes=10-19"})
        assert ranged.status_code == 206 and ranged.content == payload[10:20]

        # The production shape: the same database and store, its own process and port.
        standalone_port = free_port()
        env = racksmith_env(tmp_path, free_port()) | {
            "RACKSMITH_ARTIFACT_PORT": str(standalone_port),
        }
        server = subprocess.Popen(
            [RACKSMITH, "artifacts"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            base = f"http://127.0.0.1:{standalone_port}"
            for _ in range(300):
                try:
                    if httpx.get(f"{base}/readyz").status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if server.poll() is not None:
                    raise AssertionError(server.stderr.read() if server.stderr else "exited")
                asyncio.run(asyncio.sleep(0.1))
            path = url.split(artifact_url, 1)[1]
            whole = httpx.get(base + path)
            assert whole.status_code == 200 and whole.content == payload
            assert httpx.get(f"{base}/a/nope/bios.bin").status_code == 404
        finally:
            server.terminate()
            assert server.wait(timeout=30) == 0
    finally:
        assert up.stop() == 0
