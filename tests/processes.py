"""Running ``racksmith`` as an operator does, for tests: real processes, ports and signals."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from shared.platform.natsserver import free_port

RACKSMITH = str(Path(sys.executable).with_name("racksmith"))
STARTUP_TIMEOUT_S = 60


def racksmith_env(state_dir: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RACKSMITH_")}
    env.update(
        RACKSMITH_STATE_DIR=str(state_dir),
        RACKSMITH_PORT=str(port),
        # Every `up` also serves artifacts; its default port would collide between runs.
        RACKSMITH_ARTIFACT_PORT=str(free_port()),
        RACKSMITH_LOG_FORMAT="json",
        **extra,
    )
    return env


def nats_children(state_dir: Path) -> list[int]:
    """nats-server processes whose store dir is inside ``state_dir``."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if (
            cmdline
            and cmdline[0].endswith(b"nats-server")
            and str(state_dir).encode() in b" ".join(cmdline)
        ):
            pids.append(int(proc.name))
    return pids


class Up:
    """A running ``racksmith up`` and what its banner said."""

    def __init__(self, state_dir: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.state_dir = state_dir
        self.admin_password = (env or {}).get("RACKSMITH_ADMIN_PASSWORD", "")
        self.port = free_port()
        self.process = subprocess.Popen(
            [RACKSMITH, "up", *args],
            env=racksmith_env(state_dir, self.port) | (env or {}),
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.banner = self._read_banner()

    def _read_banner(self) -> str:
        assert self.process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("Press Ctrl-C") and "--lab" not in self.process.args:
                return "".join(lines)
            if line.startswith("  credentials:"):
                return "".join(lines)
        self.process.kill()
        raise AssertionError(f"racksmith up did not start: {''.join(lines)}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def generated_password(self) -> str | None:
        match = re.search(r"password:\s+(\S+)", self.banner)
        return match.group(1) if match else None

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)
        try:
            return self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise

    def banner_json(self, label: str) -> dict[str, Any]:
        """A JSON line of the lab banner, e.g. ``scan range`` or ``credentials``."""
        match = re.search(rf"{label}:\s+(\{{.*\}})", self.banner)
        assert match, f"no {label} in the banner"
        value: dict[str, Any] = json.loads(match.group(1))
        return value

    def run_lab_script(self, script: Path, url_variable: str) -> subprocess.CompletedProcess[str]:
        """Run a curl script against this instance and its lab as a user would: the URL in
        ``url_variable``, the BMC network, port and password from the banner, the admin
        password from the environment ``up`` was started with."""
        scan_range = self.banner_json("scan range")
        credentials = self.banner_json("credentials")
        return subprocess.run(
            ["bash", str(script)],
            env={
                "PATH": "/usr/local/bin:/usr/bin:/bin",
                url_variable: self.url,
                "ADMIN_PASSWORD": self.admin_password,
                "BMC_PASSWORD": credentials["password"],
                "IP_FROM": scan_range["ip_from"],
                "IP_TO": scan_range["ip_to"],
                "BMC_PORT": str(scan_range["ports"][0]),
            },
            capture_output=True,
            text=True,
            timeout=300,
        )


async def spawn_worker(kind: str, env: dict[str, str], log: Path) -> asyncio.subprocess.Process:
    """``racksmith worker KIND`` with its output in ``log``; returns once it consumes (a loaded
    machine starts processes slowly)."""
    process = await asyncio.create_subprocess_exec(
        RACKSMITH, "worker", kind, env=env, stdout=log.open("w"), stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(STARTUP_TIMEOUT_S):
        while '"worker.started"' not in await asyncio.to_thread(log.read_text):
            await asyncio.sleep(0.1)
    return process
