"""Running ``racksmith`` as an operator does, for tests: real processes, ports and signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

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
