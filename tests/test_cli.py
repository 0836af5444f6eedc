"""The ``racksmith`` command as an operator runs it: real processes, real ports, real signals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from openapi_spec_validator import validate

from shared.core.settings import Settings
from shared.platform.natsserver import EmbeddedNatsServer, free_port
from tests.conftest import own_nats_user, worker_env
from tests.lab_net import LAB_NET
from tests.processes import RACKSMITH, STARTUP_TIMEOUT_S, Up, nats_children, racksmith_env


@pytest.fixture
def state_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "state"
    for pid in nats_children(tmp_path):
        os.kill(pid, signal.SIGKILL)


def _login(url: str, password: str) -> dict[str, str]:
    response = httpx.post(f"{url}/api/token/", json={"username": "admin", "password": password})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access']}"}


def _readable_by_others(state_dir: Path) -> list[str]:
    """Everything in the state dir whose mode is not 0700 (directories) or 0600 (files)."""
    loose = []
    for path in [state_dir, *state_dir.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        if mode != (0o700 if path.is_dir() else 0o600):
            loose.append(f"{path.relative_to(state_dir.parent)}: {oct(mode)}")
    return loose


def test_up_serves_stops_cleanly_and_restarts_with_same_state(state_dir: Path) -> None:
    up = Up(state_dir)
    password = up.generated_password
    assert password, up.banner
    nats_port = int(re.search(r"NATS:\s+nats://127.0.0.1:(\d+)", up.banner).group(1))  # type: ignore[union-attr]
    # The machine's own NATS listens on 4222; ours must never assume that port.
    assert nats_port != 4222
    headers = _login(up.url, password)
    me = httpx.get(f"{up.url}/api/users/me/", headers=headers)
    assert me.json()["username"] == "admin" and me.json()["is_superuser"] is True
    created = httpx.post(
        f"{up.url}/api/groups/", json={"name": "kept-across-restarts"}, headers=headers
    )
    assert created.status_code == 201
    assert httpx.get(f"{up.url}/readyz").status_code == 200
    assert nats_children(state_dir)
    # The database (and its -wal, -shm), keys and broker data are the running account's alone.
    assert {"racksmith.db", "racksmith.db-wal", "secret_key.key"} <= {
        p.name for p in state_dir.iterdir()
    }
    assert _readable_by_others(state_dir) == []

    assert up.stop() == 0
    assert nats_children(state_dir) == []

    # What an older version left readable is tightened on the next start.
    state_dir.chmod(0o755)
    (state_dir / "racksmith.db").chmod(0o644)
    again = Up(state_dir)
    try:
        assert _readable_by_others(state_dir) == []
        assert again.generated_password is None
        assert "existing account" in again.banner
        headers = _login(again.url, password)
        groups = httpx.get(f"{again.url}/api/groups/?name=kept-across-restarts", headers=headers)
        assert groups.json()["count"] == 1
    finally:
        assert again.stop() == 0
    assert nats_children(state_dir) == []


def test_up_refuses_a_busy_api_port_clearly(state_dir: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [RACKSMITH, "up"],
            env=racksmith_env(state_dir, port),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert f"127.0.0.1:{port} is already in use" in result.stderr
    assert nats_children(state_dir) == []


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["up"],
        ["api"],
        ["artifacts"],
        ["worker"],
        ["migrate"],
        ["createsuperuser"],
        ["openapi"],
        ["lab"],
    ],
)
def test_every_command_has_help(command: list[str]) -> None:
    result = subprocess.run(
        [RACKSMITH, *command, "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert "usage: racksmith" in result.stdout


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_openapi_command_prints_a_valid_schema(fmt: str, tmp_path: Path) -> None:
    result = subprocess.run(
        [RACKSMITH, "openapi", "--format", fmt],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0
    validate(json.loads(result.stdout) if fmt == "json" else yaml.safe_load(result.stdout))
    assert not (tmp_path / ".racksmith").exists()


def test_migrate_then_createsuperuser(state_dir: Path) -> None:
    env = racksmith_env(state_dir, 0)
    subprocess.run([RACKSMITH, "migrate"], env=env, check=True, timeout=60)
    result = subprocess.run(
        [RACKSMITH, "createsuperuser", "--username", "ops", "--password", "ops-password-1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert (state_dir / "racksmith.db").exists()


def test_standalone_worker_serves_probes_and_stops_on_sigterm(
    nats_server: EmbeddedNatsServer, database_url: str, settings: Settings, tmp_path: Path
) -> None:
    health_port = free_port()
    env = racksmith_env(
        tmp_path / "worker",
        0,
        RACKSMITH_DATABASE_URL=database_url,
        RACKSMITH_WORKER_HEALTH_PORT=str(health_port),
        # As deployed: its own NATS user; the consumers declared as the suite declares them.
        **own_nats_user(nats_server, "scanner"),
        **{k: v for k, v in worker_env(settings).items() if "COMMAND" in k or "MAX_DELIVER" in k},
    )
    process = subprocess.Popen(
        [RACKSMITH, "worker", "scanner"], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                ready = httpx.get(f"http://127.0.0.1:{health_port}/readyz")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "worker probes never came up"
                assert process.poll() is None, process.stderr.read() if process.stderr else ""
                time.sleep(0.1)
        assert ready.status_code == 200
        assert ready.json()["checks"] == {"database": True, "broker": True}
        assert httpx.get(f"http://127.0.0.1:{health_port}/healthz").status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_api_and_worker_demand_an_external_broker(tmp_path: Path) -> None:
    result = subprocess.run(
        [RACKSMITH, "worker", "inventory"],
        env=racksmith_env(tmp_path, 0, RACKSMITH_WORKER_HEALTH_PORT=str(free_port())),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "RACKSMITH_NATS_URL must be set" in result.stderr


def test_up_with_a_lab_prints_what_the_guide_needs(state_dir: Path) -> None:
    up = Up(state_dir, "--lab", "3", "--lab-network", f"{LAB_NET}.77.0/24", "--lab-latency", "0")
    try:
        scan_range = json.loads(re.search(r"scan range:\s+(\{.*\})", up.banner).group(1))  # type: ignore[union-attr]
        assert scan_range == {
            "name": "BMC lab",
            "ip_from": f"{LAB_NET}.77.1",
            "ip_to": f"{LAB_NET}.77.3",
            "ports": [8443],
        }
        credentials = json.loads(re.search(r"credentials:\s+(\{.*\})", up.banner).group(1))  # type: ignore[union-attr]
        root = httpx.get(f"https://{LAB_NET}.77.3:8443/redfish/v1/", verify=False)  # noqa: S501
        assert root.status_code == 200 and "RedfishVersion" in root.json()
        systems = httpx.get(
            f"https://{LAB_NET}.77.1:8443/redfish/v1/Systems",
            auth=(credentials["username"], credentials["password"]),
            verify=False,  # noqa: S501
        )
        assert systems.json()["Members@odata.count"] == 1
    finally:
        assert up.stop() == 0


def test_lab_command_writes_its_manifest_and_stops_on_sigterm(tmp_path: Path) -> None:
    manifest = tmp_path / "lab.json"
    process = subprocess.Popen(
        [
            RACKSMITH,
            "lab",
            "--count",
            "2",
            "--network",
            f"{LAB_NET}.78.0/24",
            "--latency",
            "0",
            "--seed",
            "7",
            "--manifest",
            str(manifest),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not manifest.exists():
            assert time.monotonic() < deadline and process.poll() is None
            time.sleep(0.1)
        time.sleep(0.2)
        entries = json.loads(manifest.read_text())["bmcs"]
        assert [e["address"] for e in entries] == [f"{LAB_NET}.78.1", f"{LAB_NET}.78.2"]
        root = httpx.get(f"https://{LAB_NET}.78.2:8443/redfish/v1/", verify=False)  # noqa: S501
        assert root.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
