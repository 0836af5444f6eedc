"""Benchmark: discovery — Racksmith's full scan against ``nmap`` on the same targets.

The targets are a loopback network (default ``127.0.40.0/22``, its 1,022 usable hosts) laid out
like a data-centre range: a few BMCs (``--bmc-fraction``, spread evenly through the range, each a
BMC-lab BMC serving HTTPS + Redfish, with ``--lab-latency``), many silent addresses
(``--silent-fraction``: a SYN gets no answer at all, see ``bench/silence.py``), and the rest refuse
(nothing listens: the kernel answers RST at once). The layout is checked before anything is timed:
every address is connected to once and must time out / be refused / accept as planned.

Then, in the same run and on the same targets (``T`` = ``--connect-timeout``):

* ``nmap``: ``nmap -sS -p PORT --open -n -Pn -T4 --max-rtt-timeout T``, what an operator types;
  nmap adapts its wait to the measured round trip (never above ``T``) and slows down when SYNs
  go unanswered (its congestion control reads silence as packet loss);
* ``nmap fixed-wait``: Racksmith's probe policy run by nmap's engine, one SYN per address, a fixed
  wait of ``T``, every address in flight at once (``--max-retries 0 --min-rtt-timeout T
  --initial-rtt-timeout T --max-rtt-timeout T --min-hostgroup N --min-parallelism N``): the floor
  for any scanner that gives silence ``T``;
* Racksmith, with 1, 2 and 4 ``racksmith worker scanner`` processes (``--workers``) against a real
  nats-server and PostgreSQL (or SQLite), driven like a client would: create a scan range over
  the REST API, ``run_scan``, time until the range's ``completed`` event or its ``ready`` status,
  whichever the client sees first; then every BMC must be a node exactly once and nothing else
  may be. The workers use ``RACKSMITH_SCAN_CONNECT_TIMEOUT_S = T``. Nodes are forgotten between
  runs so every run inserts them afresh.

It prints seconds (median of ``--repeat`` runs), addresses/s, nodes found, the ratio to both nmap
baselines and the speed-up over one worker, with the machine description and the nmap version;
per Racksmith run also the chunks each worker did and the CPU seconds of every process. It is a
benchmark, not a test: nothing fails on wall-clock time.

    /work/venv/bin/python bench/scan.py                      # PostgreSQL on 127.0.0.1:5432
    /work/venv/bin/python bench/scan.py --database-url sqlite # a SQLite file in a temp dir
    /work/venv/bin/python bench/scan.py --network 127.0.32.0/19   # 32 chunks: scaling shows
    /work/venv/bin/python bench/scan.py --lab-latency 0           # the machinery alone

With PostgreSQL the URL names the server; the benchmark creates (if needed) and empties its own
database (``--pg-database``, default ``racksmith_bench_scan``). nmap is installed with apt-get when
missing (needs root, as does nmap's SYN scan; without root nmap's connect scan ``-sT`` is used).
Every address must be inside 127.0.0.0/8. Ctrl-C or SIGTERM stops everything it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import os
import random
import re
import resource
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from harness import (
    Child,
    cpu_seconds,
    die_with_parent,
    machine_description,
    migrate_and_create_admin,
    platform_env,
    postgres_pids,
    prepare_database,
    racksmith,
    raise_fd_limit,
    run_benchmark,
    work_dir,
)
from silence import SilentListeners, classify

from bmclab import Lab, LabConfig
from shared.core.settings import Settings
from shared.messaging.streams import SCANNER
from shared.platform.natsserver import EmbeddedNatsServer, free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_PG_DATABASE = "racksmith_bench_scan"
ADMIN_USERNAME = "bench-admin"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
FLAVOURS = ("dell", "hpe", "supermicro", "openbmc")
TARGET_RATIO = 2.0
SCAN_TIMEOUT_S = 600.0
POLL_S = 0.25


# --- the targets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    hosts: list[str]  # every address scanned, in order
    bmcs: list[str]
    silent: list[str]
    refusing: list[str]

    @property
    def first(self) -> str:
        return self.hosts[0]

    @property
    def last(self) -> str:
        return self.hosts[-1]


def plan_layout(network: str, bmc_fraction: float, silent_fraction: float, seed: int) -> Layout:
    net = ipaddress.ip_network(network, strict=False)
    if not isinstance(net, ipaddress.IPv4Network) or not net.subnet_of(LOOPBACK):
        raise SystemExit(f"scan: --network {network} is not inside 127.0.0.0/8")
    hosts = [str(h) for h in net.hosts()] if net.prefixlen < 31 else [str(a) for a in net]
    n = len(hosts)
    n_bmc = max(1, round(bmc_fraction * n))
    n_silent = min(n - n_bmc, round(silent_fraction * n))
    # BMCs evenly spread (the middle of each of n_bmc equal slices), so every chunk gets some.
    bmc_index = sorted({(2 * i + 1) * n // (2 * n_bmc) for i in range(n_bmc)})
    rest = sorted(set(range(n)) - set(bmc_index))
    silent_index = set(random.Random(seed).sample(rest, n_silent))
    return Layout(
        hosts=hosts,
        bmcs=[hosts[i] for i in bmc_index],
        silent=[hosts[i] for i in sorted(silent_index)],
        refusing=[hosts[i] for i in rest if i not in silent_index],
    )


async def start_labs(stack: AsyncExitStack, layout: Layout, args: argparse.Namespace) -> None:
    """One BMC-lab ``Lab`` per BMC address (a /32 each: host k of a /32 is its only address)."""
    for k, address in enumerate(layout.bmcs):
        config = LabConfig(
            count=1,
            network=f"{address}/32",
            port=args.port,
            flavours=(FLAVOURS[k % len(FLAVOURS)],),
            latency=args.lab_latency,
            seed=args.seed * 100_000 + k,
        )
        await stack.enter_async_context(Lab(config))


async def check_layout(layout: Layout, port: int, wait_s: float) -> bool:
    """Connect once to every address; each must behave as planned. Prints the evidence."""
    planned = (
        [(a, "accepted") for a in layout.bmcs]
        + [(a, "timeout") for a in layout.silent]
        + [(a, "refused") for a in layout.refusing]
    )
    outcomes = await classify([a for a, _ in planned], port, wait_s)
    wrong = [(o, want) for o, (_, want) in zip(outcomes, planned, strict=True) if o.outcome != want]
    by_kind: dict[str, list[float]] = {}
    for outcome in outcomes:
        by_kind.setdefault(outcome.outcome, []).append(outcome.seconds)
    print(f"Target check (one TCP connect per address, {wait_s:g} s timeout):")
    for kind, label in (("accepted", "BMC"), ("timeout", "silent"), ("refused", "refusing")):
        times = by_kind.get(kind, [])
        if times:
            print(
                f"  {label:<8} {len(times):>5} x {kind:<8} "
                f"(median {statistics.median(times) * 1000:.1f} ms, max {max(times) * 1000:.1f} ms)"
            )
    for outcome, want in wrong[:10]:
        print(f"  UNEXPECTED {outcome.address}:{port}: {outcome.outcome}, planned {want}")
    return not wrong


# --- nmap -----------------------------------------------------------------------------------------


def ensure_nmap(install: bool) -> str:
    found = shutil.which("nmap")
    if found:
        return found
    if not install:
        raise SystemExit("scan: nmap not found (and --no-install given); or use --no-nmap")
    print("nmap not found: installing it with apt-get…", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install_cmd = ["apt-get", "install", "-y", "nmap"]
    try:
        if subprocess.run(install_cmd, check=False, stdout=subprocess.DEVNULL, env=env).returncode:
            # A fresh container has no package lists yet.
            subprocess.run(["apt-get", "update"], check=True, stdout=subprocess.DEVNULL, env=env)
            subprocess.run(install_cmd, check=True, stdout=subprocess.DEVNULL, env=env)
    except (OSError, subprocess.CalledProcessError) as exc:
        raise SystemExit(
            f"scan: could not install nmap ({exc}); install it or use --no-nmap"
        ) from None
    found = shutil.which("nmap")
    if not found:
        raise SystemExit("scan: nmap still not found after apt-get install")
    return found


def nmap_version(binary: str) -> str:
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    return out.stdout.splitlines()[0].strip() if out.stdout else "unknown"


@dataclass(frozen=True)
class NmapVariant:
    name: str
    extra: tuple[str, ...]


def nmap_variants(timeout_s: float, timing: str, targets: int) -> list[NmapVariant]:
    """The two baselines; see the module docstring and the doc text for why both."""
    ms = f"{round(timeout_s * 1000)}ms"
    return [
        # What an operator types (`nmap -p PORT --open -n`), with the wait for an
        # answer capped at Racksmith's connect timeout: nmap adapts below it.
        NmapVariant("nmap", (f"-{timing}", "--max-rtt-timeout", ms)),
        # Racksmith's probe policy run by nmap's engine: one SYN per address, a fixed wait of
        # the connect timeout, every address in flight at once (nmap's congestion control would
        # otherwise read the silence as packet loss and serialise). The floor for any scanner
        # that waits that long for silence.
        NmapVariant(
            "nmap fixed-wait",
            (
                f"-{timing}",
                "--max-retries",
                "0",
                "--min-rtt-timeout",
                ms,
                "--initial-rtt-timeout",
                ms,
                "--max-rtt-timeout",
                ms,
                "--min-hostgroup",
                str(targets),
                "--min-parallelism",
                str(targets),
            ),
        ),
    ]


@dataclass
class NmapRun:
    seconds: float
    open_addresses: set[str]
    reported_seconds: float | None


def nmap_command(binary: str, variant: NmapVariant, port: int, targets: Path) -> list[str]:
    return [
        binary,
        # SYN scan needs raw sockets (root); otherwise nmap's connect scan.
        "-sS" if os.geteuid() == 0 else "-sT",
        "-p",
        str(port),
        "--open",
        "-n",
        "-Pn",
        *variant.extra,
        "-iL",
        str(targets),
        "-oG",
        "-",
    ]


async def run_nmap(command: list[str]) -> NmapRun:
    started = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    try:
        out, err = await process.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    seconds = time.perf_counter() - started
    if process.returncode != 0:
        raise RuntimeError(f"nmap failed ({process.returncode}): {err.decode(errors='replace')}")
    text = out.decode(errors="replace")
    found = set(re.findall(r"^Host: (\S+) .*Ports: .*?/open/", text, flags=re.MULTILINE))
    reported = re.search(r"scanned in ([0-9.]+) seconds", text)
    return NmapRun(seconds, found, float(reported.group(1)) if reported else None)


# --- Racksmith ------------------------------------------------------------------------------------


@dataclass
class ScanRun:
    seconds: float
    to_started: float | None
    status: str
    addresses_scanned: int
    nodes_found: int
    nodes_listed: int
    duplicates: int
    missing: int
    extra: int
    chunks_per_worker: list[int]
    detected_by: str
    cpu: dict[str, float] = field(default_factory=dict)  # CPU seconds during the scan
    wrong_addresses: list[str] = field(default_factory=list)  # missing (-) or extra (+)

    @property
    def correct(self) -> bool:
        return (
            self.status == "ready"
            and self.duplicates == 0
            and self.missing == 0
            and self.extra == 0
            and self.nodes_found == self.nodes_listed
        )


@dataclass
class Platform:
    client: httpx.AsyncClient
    nats_url: str
    env: dict[str, str]
    tmp: Path
    layout: Layout
    port: int
    nc: Any = None
    scanner_env: dict[str, str] = field(default_factory=dict)  # --scanner-env
    other_pids: dict[str, int] = field(default_factory=dict)  # api, nats-server


async def start_workers(plat: Platform, count: int, stack: AsyncExitStack) -> list[Child]:
    workers = []
    for i in range(count):
        health = free_port()
        env = {
            **plat.env,
            "RACKSMITH_WORKER_HEALTH_PORT": str(health),
            # INFO: one `scan.chunk_done` line per chunk, to count the chunks of each worker.
            "RACKSMITH_LOG_LEVEL": "INFO",
            **plat.scanner_env,
        }
        child = Child(
            f"scanner worker {i + 1}/{count}",
            racksmith("worker", "scanner"),
            env,
            plat.tmp / f"worker-{count}-{i + 1}.log",
        )
        stack.push_async_callback(child.stop)
        await child.start()
        workers.append(child)
    for child in workers:
        port = int(child.env["RACKSMITH_WORKER_HEALTH_PORT"])
        await child.wait_ready(f"http://127.0.0.1:{port}/readyz")
    return workers


def cpu_snapshot(plat: Platform, workers: Sequence[Child]) -> dict[str, float]:
    """CPU seconds so far per part of the system (PostgreSQL only if it runs on this host)."""
    snapshot = {f"worker {i + 1}": cpu_seconds(w.pid or 0) for i, w in enumerate(workers)}
    snapshot |= {name: cpu_seconds(pid) for name, pid in plat.other_pids.items()}
    snapshot["postgres"] = sum(cpu_seconds(pid) for pid in postgres_pids())
    snapshot["bench+lab"] = cpu_seconds(os.getpid())
    return snapshot


def _log_sizes(workers: Sequence[Child]) -> list[int]:
    return [w.log_path.stat().st_size if w.log_path.exists() else 0 for w in workers]


def _chunks_since(workers: Sequence[Child], offsets: Sequence[int]) -> list[int]:
    counts = []
    for worker, offset in zip(workers, offsets, strict=True):
        with worker.log_path.open("rb") as log:
            log.seek(offset)
            counts.append(log.read().count(b"scan.chunk_done"))
    return counts


async def scan_once(plat: Platform, name: str, workers: Sequence[Child]) -> ScanRun:
    client, layout = plat.client, plat.layout
    created = await client.post(
        "/api/node_discovery/scan_range/",
        json={"name": name, "ip_from": layout.first, "ip_to": layout.last, "ports": [plat.port]},
    )
    if created.status_code != 201:
        raise RuntimeError(f"creating the scan range failed: {created.status_code} {created.text}")
    range_id = created.json()["id"]
    events: asyncio.Queue[tuple[str, float]] = asyncio.Queue()

    async def on_event(msg: Any) -> None:
        events.put_nowait((msg.subject.rsplit(".", 1)[-1], time.perf_counter()))

    sub = await plat.nc.subscribe(f"racksmith.evt.scan_range.{range_id}.*", cb=on_event)
    await plat.nc.flush()
    offsets = _log_sizes(workers)
    cpu_before = cpu_snapshot(plat, workers)
    try:
        started = time.perf_counter()
        response = await client.post(
            "/api/node_discovery/run_scan/", json={"scan_ranges": [range_id]}
        )
        if response.status_code != 202:
            raise RuntimeError(f"run_scan failed: {response.status_code} {response.text}")
        to_started: float | None = None
        finished: float | None = None
        detected_by = "event"
        deadline = started + SCAN_TIMEOUT_S
        while finished is None:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"scan of range {range_id} not done in {SCAN_TIMEOUT_S:g} s")
            try:
                change, at = await asyncio.wait_for(events.get(), timeout=POLL_S)
            except TimeoutError:
                # What a client sees, too: the end is whichever comes first, the range's
                # `completed` event or its `ready` status (polled whenever no event came for
                # POLL_S; the outbox may publish the event a moment after the commit).
                body = (await client.get(f"/api/node_discovery/scan_range/{range_id}/")).json()
                if body["status"] != "scanning":
                    finished, detected_by = time.perf_counter(), f"polling ({POLL_S:g} s)"
                continue
            if change == "started":
                to_started = at - started
            elif change in ("completed", "failed"):
                finished = at
    finally:
        await sub.unsubscribe()
    cpu_after = cpu_snapshot(plat, workers)
    body = (await client.get(f"/api/node_discovery/scan_range/{range_id}/")).json()
    nodes = (await client.get("/api/node/", params={"scan_range": range_id})).json()["results"]
    ips = [n["ip"] for n in nodes]
    expected = set(layout.bmcs)
    # Let the workers finish writing their last log lines before counting chunks.
    await asyncio.sleep(0.2)
    run = ScanRun(
        seconds=finished - started,
        to_started=to_started,
        status=body["status"],
        addresses_scanned=body["addresses_scanned"],
        nodes_found=body["nodes_found"],
        nodes_listed=len(ips),
        duplicates=len(ips) - len(set(ips)),
        missing=len(expected - set(ips)),
        wrong_addresses=[f"-{a}" for a in sorted(expected - set(ips))]
        + [f"+{a}" for a in sorted(set(ips) - expected)],
        extra=len(set(ips) - expected),
        chunks_per_worker=_chunks_since(workers, offsets),
        detected_by=detected_by,
        cpu={name: cpu_after[name] - cpu_before.get(name, 0.0) for name in cpu_after},
    )
    # Forget the nodes so the next run inserts them again (same work every run).
    for node in nodes:
        deleted = await client.delete(f"/api/node/{node['id']}/")
        if deleted.status_code != 204:
            raise RuntimeError(f"deleting node {node['id']} failed: {deleted.status_code}")
    return run


# --- reporting ------------------------------------------------------------------------------------


def scanner_shape(args: argparse.Namespace) -> tuple[int, int]:
    """(addresses per chunk, chunks one scanner process runs at once) for this run."""
    overrides = dict(item.split("=", 1) for item in args.scanner_env)
    chunk_size = int(overrides.get("RACKSMITH_SCAN_CHUNK_SIZE", Settings().scan_chunk_size))
    return chunk_size, SCANNER.concurrency


def _ratio(seconds: float, base: dict[str, float], name: str) -> str:
    return f"{seconds / base[name]:.2f}x" if name in base else "n/a"


def _spread(values: Sequence[float]) -> str:
    if len(values) == 1:
        return ""
    return f"  ({min(values):.2f}-{max(values):.2f})"


def report(
    layout: Layout,
    args: argparse.Namespace,
    nmap_results: dict[str, list[NmapRun]],
    commands: dict[str, list[str]],
    scans: dict[int, list[ScanRun]],
) -> None:
    n = len(layout.hosts)
    print()
    print(
        f"Targets: {n} addresses {layout.first} - {layout.last} port {args.port}: "
        f"{len(layout.bmcs)} BMCs (lab latency {args.lab_latency}), {len(layout.silent)} silent, "
        f"{len(layout.refusing)} refusing; connect timeout {args.connect_timeout:g} s; "
        f"median of {args.repeat} run(s), min-max in parentheses."
    )
    chunk_size, per_worker = scanner_shape(args)
    chunks = -(-n // chunk_size)
    if chunks <= per_worker:
        shape = (
            "one scanner process alone can run them all at once, so more processes cannot "
            "shorten this range"
        )
    else:
        shape = (
            f"one scanner process runs at most {per_worker} at once, so "
            f"{-(-chunks // per_worker)} processes are needed to run them all at once"
        )
    print(f"The range is {chunks} chunks of up to {chunk_size} addresses: {shape}.")
    print()
    header = (
        f"{'scanner':<14} {'seconds':>20} {'addresses/s':>12} {'nodes found':>12} "
        f"{'vs nmap':>8} {'vs fixed-wait':>15} {'speed-up':>9}"
    )
    print(header)
    print("-" * len(header))
    base = {name: statistics.median(r.seconds for r in runs) for name, runs in nmap_results.items()}
    for name, runs in nmap_results.items():
        seconds = [r.seconds for r in runs]
        med = statistics.median(seconds)
        found = sorted({len(r.open_addresses) for r in runs})
        print(
            f"{name:<14} {med:>8.2f}{_spread(seconds):<12} {n / med:>12.0f} "
            f"{'/'.join(map(str, found)) + ' open':>12} "
            f"{_ratio(med, base, 'nmap'):>8} {_ratio(med, base, 'nmap fixed-wait'):>15} {'':>9}"
        )
    one_worker: float | None = None
    for workers, runs in scans.items():
        seconds = [r.seconds for r in runs]
        med = statistics.median(seconds)
        if workers == 1:
            one_worker = med
        found = sorted({r.nodes_listed for r in runs})
        speed_up = f"{one_worker / med:.2f}x" if one_worker else "n/a"
        label = f"racksmith {workers}w"
        print(
            f"{label:<14} {med:>8.2f}{_spread(seconds):<12} {n / med:>12.0f} "
            f"{'/'.join(map(str, found)) + f' of {len(layout.bmcs)}':>12} "
            f"{_ratio(med, base, 'nmap'):>8} {_ratio(med, base, 'nmap fixed-wait'):>15} "
            f"{speed_up:>9}"
        )
    print()
    print("Commands (targets file = the scanned addresses, one a line):")
    for name, command in commands.items():
        print(f"  {name}: {shlex.join(command)}")
    print()
    print("Correctness and details per Racksmith run:")
    for workers, runs in scans.items():
        for i, r in enumerate(runs, 1):
            verdict = "ok" if r.correct else "WRONG"
            started = f"{r.to_started:.2f} s" if r.to_started is not None else "n/a"
            print(
                f"  {workers}w #{i}: {r.seconds:.2f} s, {verdict}: status {r.status}, "
                f"{r.addresses_scanned}/{n} scanned, nodes_found {r.nodes_found}, listed "
                f"{r.nodes_listed} (duplicates {r.duplicates}, missing {r.missing}, extra "
                f"{r.extra}); run_scan→started {started}; chunks per worker "
                f"{'/'.join(map(str, r.chunks_per_worker))}; end seen by {r.detected_by}"
            )
            if r.wrong_addresses:
                print(f"      missing (-) / extra (+): {' '.join(r.wrong_addresses[:20])}")
            workers_cpu = [v for k, v in r.cpu.items() if k.startswith("worker")]
            others = ", ".join(
                f"{k} {v:.2f}" for k, v in r.cpu.items() if not k.startswith("worker")
            )
            print(
                f"      CPU s during the scan: workers {sum(workers_cpu):.2f} "
                f"({'/'.join(f'{v:.2f}' for v in workers_cpu)}), {others}; "
                f"available {r.seconds * len(os.sched_getaffinity(0)):.2f}"
            )
    for name, runs in nmap_results.items():
        for i, r in enumerate(runs, 1):
            ok = r.open_addresses == set(layout.bmcs)
            reported = f"{r.reported_seconds:.2f}" if r.reported_seconds is not None else "?"
            print(
                f"  {name} #{i}: {r.seconds:.2f} s wall (nmap says {reported} s), "
                f"{len(r.open_addresses)} open, {'= the BMCs' if ok else 'DIFFERS from the BMCs'}"
            )
    if scans and base:
        best = min(statistics.median(r.seconds for r in runs) for runs in scans.values())
        verdicts = []
        for name, seconds in base.items():
            ratio = best / seconds
            verdicts.append(f"{ratio:.2f}x {name} ({'met' if ratio <= TARGET_RATIO else 'MISSED'})")
        print()
        print(
            f"Target: Racksmith within {TARGET_RATIO:g}x of nmap's time while also "
            f"completing the Redfish probe. Best Racksmith median: {'; '.join(verdicts)}. "
            f"Speed-up 1->N workers in the table ({len(os.sched_getaffinity(0))} cpu(s) here)."
        )


# --- orchestration --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time Racksmith's discovery against nmap on a loopback range of BMCs, "
        "silent and refusing addresses.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--network", default="127.0.40.0/22", help="loopback network to scan")
    parser.add_argument("--bmc-fraction", type=float, default=0.05, help="share of BMCs")
    parser.add_argument(
        "--silent-fraction",
        type=float,
        default=0.7,
        help="share of silent addresses (SYN dropped); the rest refuse (RST)",
    )
    parser.add_argument(
        "--workers", default="1,2,4", help="comma-separated scanner process counts to time"
    )
    parser.add_argument("--port", type=int, default=8443, help="the port scanned")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="PostgreSQL server URL (the benchmark uses --pg-database on it), or `sqlite` for "
        "a SQLite file in a temp dir",
    )
    parser.add_argument(
        "--pg-database",
        default=DEFAULT_PG_DATABASE,
        help="PostgreSQL database created (if missing) and emptied for the benchmark",
    )
    parser.add_argument(
        "--connect-timeout",
        type=float,
        default=1.0,
        help="seconds a silent address costs: RACKSMITH_SCAN_CONNECT_TIMEOUT_S and nmap's "
        "--max-rtt-timeout",
    )
    parser.add_argument(
        "--lab-latency",
        default="realistic",
        help="BMC-lab latency per request: 0 | realistic | MS | MEDIAN,P99",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per configuration")
    parser.add_argument("--seed", type=int, default=1, help="seed for the layout and the lab")
    parser.add_argument("--nmap-timing", default="T4", help="nmap timing template (T0-T5)")
    parser.add_argument("--no-nmap", action="store_true", help="skip nmap (no ratios)")
    parser.add_argument(
        "--no-install", action="store_true", help="do not apt-get install nmap when missing"
    )
    parser.add_argument(
        "--scanner-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra RACKSMITH_* setting for the workers, e.g. RACKSMITH_SCAN_CHUNK_SIZE=64 "
        "(repeatable)",
    )
    parser.add_argument(
        "--keep-logs", action="store_true", help="keep the temp dir with every process's log"
    )
    args = parser.parse_args(argv)
    try:
        args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error("--workers: comma-separated integers, e.g. 1,2,4")
    if any(w < 1 for w in args.worker_counts) or args.repeat < 1:
        parser.error("--workers and --repeat must be positive")
    if not 0 < args.bmc_fraction < 1 or not 0 <= args.silent_fraction < 1:
        parser.error("--bmc-fraction and --silent-fraction must be fractions")
    for item in args.scanner_env:
        if "=" not in item or not item.startswith("RACKSMITH_"):
            parser.error(f"--scanner-env {item!r}: expected RACKSMITH_NAME=VALUE")
    return args


def _step(message: str) -> float:
    print(message, end="", flush=True)
    return time.perf_counter()


def _done(started: float, extra: str = "") -> None:
    print(f" {time.perf_counter() - started:.1f} s{extra}", flush=True)


def _raise_fd_limit(needed: int) -> None:
    raise_fd_limit(needed)
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft < needed:
        raise SystemExit(f"scan: need {needed} open files, `ulimit -n` allows {soft}")


async def run(args: argparse.Namespace) -> None:
    task = asyncio.current_task()
    assert task is not None
    # SIGTERM like Ctrl-C: cancel, so every cleanup below runs.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    layout = plan_layout(args.network, args.bmc_fraction, args.silent_fraction, args.seed)
    # Listener + filler per silent address, a listener and a few connections per BMC, the
    # target check's 1,024 connections in flight, and some slack.
    _raise_fd_limit(2 * len(layout.silent) + 4 * len(layout.bmcs) + 1024 + 512)
    nmap_binary = None if args.no_nmap else ensure_nmap(not args.no_install)
    async with AsyncExitStack() as stack:
        tmp, keep = work_dir(stack, "racksmith-bench-scan-", args.keep_logs)

        started = _step(
            f"Targets: {len(layout.bmcs)} lab BMCs, {len(layout.silent)} silent listeners…"
        )
        await start_labs(stack, layout, args)
        silent = SilentListeners(layout.silent, args.port)
        stack.enter_context(silent)
        _done(started)
        if not await check_layout(layout, args.port, min(args.connect_timeout, 0.5)):
            raise SystemExit("scan: the targets do not behave as planned; see above")
        (tmp / "targets.txt").write_text("\n".join(layout.hosts) + "\n")

        nmap_results: dict[str, list[NmapRun]] = {}
        commands: dict[str, list[str]] = {}
        version = "not run"
        if nmap_binary is not None:
            version = nmap_version(nmap_binary)
            for variant in nmap_variants(args.connect_timeout, args.nmap_timing, len(layout.hosts)):
                command = nmap_command(nmap_binary, variant, args.port, tmp / "targets.txt")
                commands[variant.name] = command
                nmap_results[variant.name] = []
                for i in range(args.repeat):
                    started = _step(f"{variant.name} #{i + 1}…")
                    result = await run_nmap(command)
                    nmap_results[variant.name].append(result)
                    _done(started, f" ({len(result.open_addresses)} open)")

        database_url, database = await prepare_database(args.database_url, args.pg_database, tmp)
        nats_server = EmbeddedNatsServer(tmp / "nats")
        started = _step("Starting nats-server…")
        await nats_server.start()
        stack.push_async_callback(nats_server.stop)
        _done(started)

        env = platform_env(
            tmp,
            database_url,
            nats_server.client_url(),
            RACKSMITH_SCAN_CONNECT_TIMEOUT_S=str(args.connect_timeout),
            RACKSMITH_SCAN_ALLOWED_NETWORKS=str(LOOPBACK),
        )
        scanner_env = dict(item.split("=", 1) for item in args.scanner_env)
        started = _step("racksmith migrate, createsuperuser…")
        password = await migrate_and_create_admin(env, tmp, ADMIN_USERNAME)
        _done(started)

        api_port = free_port()
        api = Child(
            "racksmith api",
            racksmith("api", "--host", "127.0.0.1", "--port", str(api_port)),
            env,
            tmp / "api.log",
        )
        started = _step("Starting racksmith api…")
        stack.push_async_callback(api.stop)
        await api.start()
        await api.wait_ready(f"http://127.0.0.1:{api_port}/readyz")
        _done(started)

        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=60)
        )
        token = await client.post(
            "/api/token/", json={"username": ADMIN_USERNAME, "password": password}
        )
        token.raise_for_status()
        client.headers["Authorization"] = f"Bearer {token.json()['access']}"
        nc = await nats.connect(nats_server.client_url())
        stack.push_async_callback(nc.close)
        plat = Platform(client, nats_server.client_url(), env, tmp, layout, args.port, nc)
        plat.scanner_env = scanner_env
        plat.other_pids = {"api": api.pid or 0, "nats": nats_server.pid or 0}

        print()
        for key, value in machine_description(database, [("nmap", version)]):
            print(f"{key:<13} {value}")
        print(flush=True)

        scans: dict[int, list[ScanRun]] = {}
        for count in args.worker_counts:
            async with AsyncExitStack() as worker_stack:
                started = _step(f"Starting {count} scanner worker(s)…")
                workers = await start_workers(plat, count, worker_stack)
                _done(started, f" (pids {', '.join(str(w.pid) for w in workers)})")
                scans[count] = []
                for i in range(args.repeat):
                    started = _step(f"  racksmith {count}w #{i + 1}…")
                    result = await scan_once(plat, f"bench {count}w #{i + 1}", workers)
                    scans[count].append(result)
                    _done(
                        started,
                        f" (scan {result.seconds:.2f} s, {result.nodes_listed} nodes, "
                        f"{'ok' if result.correct else 'WRONG'}, chunks/worker "
                        f"{'/'.join(map(str, result.chunks_per_worker))})",
                    )
        report(layout, args, nmap_results, commands, scans)
        totals = Counter(r.correct for runs in scans.values() for r in runs)
        if totals[False]:
            keep[0] = True
            print(f"\n{totals[False]} Racksmith run(s) gave WRONG results.")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark(run(args))


if __name__ == "__main__":
    sys.exit(main())
