"""Benchmark: horizontal scaling — 1, 2 and 4 worker processes, the production shape.

Every process is a separate OS process on this machine: one nats-server, PostgreSQL,
``racksmith api`` and N ``racksmith worker scanner`` / ``racksmith worker inventory`` processes.
Two phases, each timed with 1, 2 and 4 worker processes (``--workers``):

1. **Scanner**: a loopback range (``--scan-network``, default a /19: 8,190 addresses, 32 chunks)
   laid out as in ``bench/scan.py`` — 5% BMC-lab BMCs with realistic latency, 70% silent (a SYN is
   dropped, the probe pays ``--connect-timeout``), the rest refusing. Timed from ``run_scan`` to
   the range's ``completed``; every BMC must be a node exactly once. Each worker runs with
   ``RACKSMITH_SCAN_CONCURRENCY = --scan-concurrency`` (default 256 probes in flight per process,
   instead of 2,048): a fixed-size worker that one range keeps busy, so the step measures how work
   spreads over processes, not how far one process can be widened (``--scan-concurrency 2048``
   shows the latter: then one process absorbs the whole /19 and more processes only add CPU).
2. **Inventory**: a BMC lab of ``--bmcs`` BMCs (default 240, realistic latency, 4 requests in
   flight per BMC) in its own process (``python -m bmclab``), registered once (scanner +
   registrar + inventory workers), then for each N: N ``racksmith worker inventory`` processes,
   ``POST /api/server/refresh/`` with every server id, poll ``/api/server/`` until every server's
   ``last_inventory_at`` moved; time = request → the last new ``last_inventory_at``. Each worker
   runs with ``RACKSMITH_REDFISH_TOTAL = --redfish-total`` (default 64 Redfish requests in flight
   per process = 16 BMCs at the default 4 per BMC, instead of 256): a fixed-size worker that the
   fleet keeps busy, so the work per process is bound by BMC latency, as in a data centre.

**Kill test** (``--kill``, on by default): after the timed runs of every step with more than one
worker, one more run in which one worker is SIGKILLed mid-run (at ``--kill-at`` of the step's
timed run). Its commands are redelivered to the survivors after ``ack_wait``
(``RACKSMITH_COMMAND_ACK_WAIT_S = --ack-wait``, default 10 s instead of 60 s, so the run stays
short; handlers heartbeat every ack_wait/3, so no live handler is redelivered). Checked: scanner —
every BMC a node exactly once, nothing else; inventory — every server's ``last_inventory_at``
moved and it is ``collected``, the numbers of servers, nodes and inventory rows (processors,
memory modules, ethernet interfaces, storage, firmware components) are unchanged, and the
``server.inventoried`` events per server (at least one; more than one means a redelivered command
re-collected a server in effect idempotently). Timed runs are checked the same way.

Per run it records the CPU seconds of every process (from /proc: workers, api, nats-server,
PostgreSQL, the lab, the benchmark) and, for inventory, the consumer's queue depth (JetStream
``num_pending`` / ``num_ack_pending``), so a speed-up short of linear can be attributed: on a
2-core machine, CPU-bound (the processes use the cores) vs I/O-bound (they wait on BMCs).

    /work/venv/bin/python bench/scale.py                      # both phases, ~6 min
    /work/venv/bin/python bench/scale.py --phases inventory --bmcs 100 --workers 1,2
    /work/venv/bin/python bench/scale.py --no-kill --repeat 2

PostgreSQL only (the production shape): the URL names the server; the benchmark creates (if
needed) and empties its own database (``--pg-database``, default ``racksmith_bench_scale``).
All traffic stays on 127.0.0.0/8. A benchmark, not a test: nothing fails on wall-clock time.
Ctrl-C / SIGTERM stop every process it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import statistics
import sys
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import nats
from harness import (
    Child,
    cpu_seconds,
    create_auth_profile,
    embedded_nats,
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
from scan import (
    Layout,
    Platform,
    check_layout,
    plan_layout,
    scan_once,
    start_labs,
)
from silence import SilentListeners
from sqlalchemy import make_url

from shared.messaging.streams import COMMANDS_STREAM, INVENTORY
from shared.platform.natsserver import free_port

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"
DEFAULT_PG_DATABASE = "racksmith_bench_scale"
ADMIN_USERNAME = "bench-admin"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
USERNAME, PASSWORD = "root", "calvin"
INVENTORY_TABLES = (
    "server",
    "node",
    "processor",
    "memory_module",
    "ethernet_interface",
    "storage",
    "firmware_component",
)
POLL_S = 1.0


def _progress(text: str) -> None:
    print(text, end="", flush=True)


def _utc(value: str | None) -> datetime | None:
    if not value:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


# --- shared plumbing ------------------------------------------------------------------------------


@dataclass
class Ctx:
    args: argparse.Namespace
    tmp: Path
    env: dict[str, str]
    client: httpx.AsyncClient
    nc: Any
    dsn: str  # asyncpg DSN of the bench database
    other_pids: dict[str, int] = field(default_factory=dict)  # api, nats-server, lab

    def cpu(self, workers: Sequence[Child]) -> dict[str, float]:
        snap = {f"worker {i + 1}": cpu_seconds(w.pid or 0) for i, w in enumerate(workers)}
        snap |= {name: cpu_seconds(pid) for name, pid in self.other_pids.items()}
        snap["postgres"] = sum(cpu_seconds(pid) for pid in postgres_pids())
        snap["bench"] = cpu_seconds(os.getpid())
        return snap


def cpu_delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    # A SIGKILLed worker's /proc entry is gone: its figure is what it had used until the kill.
    return {k: max(0.0, after.get(k, 0.0) - before.get(k, 0.0)) for k in before | after}


async def start_workers(
    ctx: Ctx, kind: str, count: int, stack: AsyncExitStack, extra_env: dict[str, str], tag: str
) -> list[Child]:
    workers = []
    for i in range(count):
        env = {**ctx.env, "RACKSMITH_WORKER_HEALTH_PORT": str(free_port()), **extra_env}
        child = Child(
            f"{kind} worker {i + 1}/{count}",
            racksmith("worker", kind),
            env,
            ctx.tmp / f"{kind}-{tag}-{i + 1}.log",
        )
        stack.push_async_callback(child.stop)
        await child.start()
        workers.append(child)
    for child in workers:
        await child.wait_ready(
            f"http://127.0.0.1:{child.env['RACKSMITH_WORKER_HEALTH_PORT']}/readyz"
        )
    return workers


async def kill_later(worker: Child, delay: float, record: list[float]) -> None:
    await asyncio.sleep(delay)
    if worker.process is not None and worker.process.returncode is None:
        worker.process.send_signal(signal.SIGKILL)
        record.append(delay)


async def list_all(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    page = 1
    while True:
        response = await client.get(path, params={**params, "page": page, "page_size": 1000})
        response.raise_for_status()
        body = response.json()
        results += body["results"]
        if not body["next"]:
            return results
        page += 1


# --- phase 1: scanner -----------------------------------------------------------------------------


@dataclass
class ScanStep:
    workers: int
    seconds: list[float] = field(default_factory=list)
    correct: list[bool] = field(default_factory=list)
    chunks: list[list[int]] = field(default_factory=list)
    cpu: list[dict[str, float]] = field(default_factory=list)
    kill: dict[str, Any] | None = None


async def scanner_phase(ctx: Ctx, stack: AsyncExitStack) -> tuple[Layout, list[ScanStep]]:
    args = ctx.args
    layout = plan_layout(args.scan_network, 0.05, 0.7, args.seed)
    lab_args = argparse.Namespace(port=args.port, lab_latency=args.latency, seed=args.seed)
    _progress(f"Scanner targets: {len(layout.bmcs)} lab BMCs, {len(layout.silent)} silent…")
    started = time.perf_counter()
    async with AsyncExitStack() as targets:
        await start_labs(targets, layout, lab_args)
        targets.enter_context(SilentListeners(layout.silent, args.port))
        _progress(f" {time.perf_counter() - started:.1f} s\n")
        if not await check_layout(layout, args.port, min(args.connect_timeout, 0.5)):
            raise SystemExit("scale: the scan targets do not behave as planned; see above")
        plat = Platform(ctx.client, "", ctx.env, ctx.tmp, layout, args.port, ctx.nc)
        plat.other_pids = ctx.other_pids
        steps = []
        for count in args.worker_counts:
            step = ScanStep(count)
            steps.append(step)
            async with AsyncExitStack() as worker_stack:
                workers = await start_workers(
                    ctx,
                    "scanner",
                    count,
                    worker_stack,
                    # INFO: one `scan.chunk_done` line per chunk (chunks per worker).
                    {
                        "RACKSMITH_LOG_LEVEL": "INFO",
                        "RACKSMITH_SCAN_CONCURRENCY": str(args.scan_concurrency),
                    },
                    f"{count}w",
                )
                for i in range(args.repeat):
                    _progress(f"  scanner {count}w #{i + 1}…")
                    run = await scan_once(plat, f"scale {count}w #{i + 1}", workers)
                    step.seconds.append(run.seconds)
                    step.correct.append(run.correct)
                    step.chunks.append(run.chunks_per_worker)
                    step.cpu.append(run.cpu)
                    _progress(
                        f" {run.seconds:.2f} s, {run.nodes_listed}/{len(layout.bmcs)} nodes, "
                        f"{'ok' if run.correct else 'WRONG'}, chunks "
                        f"{'/'.join(map(str, run.chunks_per_worker))}\n"
                    )
                if args.kill and count > 1:
                    delay = args.kill_at * statistics.median(step.seconds)
                    _progress(f"  scanner {count}w, SIGKILL worker {count} at {delay:.1f} s…")
                    killed: list[float] = []
                    killer = asyncio.create_task(kill_later(workers[-1], delay, killed))
                    try:
                        run = await scan_once(plat, f"scale {count}w kill", workers)
                    finally:
                        killer.cancel()
                    step.kill = {
                        "killed_at": killed[0] if killed else None,
                        "seconds": run.seconds,
                        "correct": run.correct,
                        "nodes": run.nodes_listed,
                        "duplicates": run.duplicates,
                        "missing": run.missing,
                        "extra": run.extra,
                        "nodes_found": run.nodes_found,
                        "scanned": run.addresses_scanned,
                        "chunks": run.chunks_per_worker,
                    }
                    _progress(
                        f" {run.seconds:.2f} s, {run.nodes_listed} nodes (duplicates "
                        f"{run.duplicates}, missing {run.missing}, extra {run.extra}), "
                        f"{'ok' if run.correct and killed else 'WRONG'}\n"
                    )
    return layout, steps


# --- phase 2: inventory ---------------------------------------------------------------------------


@dataclass
class InvRun:
    seconds: float = 0.0  # request -> the last new last_inventory_at (server clock)
    polled_s: float = 0.0
    moved: int = 0
    collected: int = 0
    rows_before: dict[str, int] = field(default_factory=dict)
    rows_after: dict[str, int] = field(default_factory=dict)
    collections: Counter[int] = field(default_factory=Counter)  # `inventory.collected` lines
    per_worker: list[int] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    pending: list[tuple[float, int, int]] = field(default_factory=list)  # t, pending, ack_pending
    killed_at: float | None = None

    def checks(self, servers: int) -> list[tuple[str, bool, str]]:
        collected_once = sum(1 for v in self.collections.values() if v == 1)
        twice = sum(1 for v in self.collections.values() if v > 1)
        return [
            ("every server re-collected", self.moved == servers, f"{self.moved}/{servers} moved"),
            ("every server collected", self.collected == servers, f"{self.collected} collected"),
            (
                "rows unchanged (no duplicates, nothing lost)",
                self.rows_before == self.rows_after,
                ", ".join(
                    f"{t} {self.rows_before.get(t)}"
                    + (f"->{self.rows_after.get(t)}" if self.rows_after.get(t) != v else "")
                    for t, v in self.rows_before.items()
                ),
            ),
            (
                "collections committed per server (worker logs)",
                collected_once == servers and len(self.collections) == servers,
                f"{collected_once} exactly once, {twice} more than once, "
                f"{servers - len(self.collections)} never; per worker "
                f"{'/'.join(map(str, self.per_worker))}",
            ),
        ]


async def count_rows(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            t: int(await conn.fetchval(f'SELECT count(*) FROM "{t}"'))  # noqa: S608 - fixed names
            for t in INVENTORY_TABLES
        }
    finally:
        await conn.close()


async def start_bmclab(ctx: Ctx, stack: AsyncExitStack) -> tuple[Child, list[str]]:
    args = ctx.args
    manifest = ctx.tmp / "lab-manifest.json"
    lab = Child(
        "bmclab",
        [
            sys.executable,
            "-m",
            "bmclab",
            "--count",
            str(args.bmcs),
            "--network",
            args.lab_network,
            "--port",
            str(args.port),
            "--latency",
            args.latency,
            "--seed",
            str(args.seed),
            "--manifest",
            str(manifest),
        ],
        {**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        ctx.tmp / "bmclab.log",
    )
    stack.push_async_callback(lab.stop)
    await lab.start()
    deadline = time.monotonic() + 120
    while not manifest.exists() or not manifest.stat().st_size:
        if lab.process is None or lab.process.returncode is not None:
            raise RuntimeError(f"bmclab exited:\n{lab.log_tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"bmclab not ready in 120 s:\n{lab.log_tail()}")
        await asyncio.sleep(0.2)
    await asyncio.sleep(0.3)  # the manifest is written in one go, after the listeners are up
    addresses = [b["address"] for b in json.loads(manifest.read_text())["bmcs"]]
    return lab, addresses


async def register_fleet(ctx: Ctx, addresses: list[str]) -> tuple[list[int], float]:
    """Discovery + registration + first inventory, with one scanner/registrar/2 inventory."""
    client, args = ctx.client, ctx.args
    started = time.perf_counter()
    async with AsyncExitStack() as stack:
        for kind, n in (("scanner", 1), ("registrar", 1), ("inventory", 2)):
            await start_workers(ctx, kind, n, stack, {}, "setup")
        profile = await create_auth_profile(client, USERNAME, PASSWORD)
        ordered = sorted(addresses, key=lambda a: ipaddress.IPv4Address(a))
        created = await client.post(
            "/api/node_discovery/scan_range/",
            json={
                "name": "scale inventory lab",
                "ip_from": ordered[0],
                "ip_to": ordered[-1],
                "ports": [args.port],
            },
        )
        created.raise_for_status()
        range_id = created.json()["id"]
        (
            await client.post("/api/node_discovery/run_scan/", json={"scan_ranges": [range_id]})
        ).raise_for_status()
        deadline = time.perf_counter() + args.timeout
        while True:
            await asyncio.sleep(0.5)
            body = (await client.get(f"/api/node_discovery/scan_range/{range_id}/")).json()
            if body["status"] != "scanning":
                break
            if time.perf_counter() > deadline:
                raise RuntimeError("discovery of the inventory lab not done in --timeout")
        nodes = await list_all(client, "/api/node/", scan_range=range_id)
        if sorted(n["ip"] for n in nodes) != sorted(addresses):
            raise RuntimeError(f"discovery found {len(nodes)} nodes, expected {len(addresses)}")
        accepted = await client.post(
            "/api/node/register/",
            params={"wait": 0},
            json={"nodes": [n["id"] for n in nodes], "auth_profile": profile},
        )
        if accepted.status_code not in (200, 202):
            raise RuntimeError(f"register failed: {accepted.status_code} {accepted.text[:500]}")
        while True:
            await asyncio.sleep(POLL_S)
            servers = await list_all(client, "/api/server/")
            nodes = await list_all(client, "/api/node/", scan_range=range_id)
            if (
                len(servers) == len(addresses)
                and all(n["status"] != "registering" for n in nodes)
                and all(s["inventory_status"] not in ("pending", "collecting") for s in servers)
            ):
                break
            if time.perf_counter() > deadline:
                raise RuntimeError("registration of the inventory lab not done in --timeout")
        collected = sum(s["inventory_status"] == "collected" for s in servers)
        if collected != len(addresses):
            raise RuntimeError(f"{collected}/{len(addresses)} servers collected after registration")
    return sorted(s["id"] for s in servers), time.perf_counter() - started


async def refresh_all(
    ctx: Ctx, ids: list[int], workers: Sequence[Child], kill_after: float | None
) -> InvRun:
    client = ctx.client
    run = InvRun()
    run.rows_before = await count_rows(ctx.dsn)
    before = {s["id"]: s["last_inventory_at"] for s in await list_all(client, "/api/server/")}

    offsets = [w.log_path.stat().st_size if w.log_path.exists() else 0 for w in workers]
    js = ctx.nc.jetstream()
    t0 = time.perf_counter()

    async def sample_queue() -> None:
        while True:
            with contextlib.suppress(Exception):
                info = await js.consumer_info(COMMANDS_STREAM, INVENTORY.durable)
                run.pending.append(
                    (time.perf_counter() - t0, info.num_pending or 0, info.num_ack_pending or 0)
                )
            await asyncio.sleep(0.5)

    cpu_before = ctx.cpu(workers)
    requested = datetime.now(UTC)
    t0 = time.perf_counter()
    sampler = asyncio.create_task(sample_queue())
    killed: list[float] = []
    killer = (
        asyncio.create_task(kill_later(workers[-1], kill_after, killed))
        if kill_after is not None
        else None
    )
    try:
        response = await client.post("/api/server/refresh/", json={"servers": ids})
        if response.status_code != 202:
            raise RuntimeError(f"refresh failed: {response.status_code} {response.text[:300]}")
        deadline = t0 + ctx.args.timeout
        while True:
            await asyncio.sleep(POLL_S)
            servers = await list_all(client, "/api/server/")
            moved = [
                s
                for s in servers
                if s["last_inventory_at"] and s["last_inventory_at"] != before.get(s["id"])
            ]
            if len(moved) >= len(ids) or time.perf_counter() > deadline:
                break
        run.polled_s = time.perf_counter() - t0
        cpu_after = ctx.cpu(workers)
    finally:
        sampler.cancel()
        if killer is not None:
            killer.cancel()
    run.killed_at = killed[0] if killed else None
    run.cpu = cpu_delta(cpu_before, cpu_after)
    run.moved = len(moved)
    last = max((_utc(s["last_inventory_at"]) for s in moved), default=None)
    run.seconds = (last - requested).total_seconds() if last else run.polled_s
    # Let the outbox relay the last events, and any late redelivery land, before counting.
    await asyncio.sleep(2.0)
    for worker, offset in zip(workers, offsets, strict=True):
        with worker.log_path.open("rb") as log:
            log.seek(offset)
            lines = [json.loads(x) for x in log.read().splitlines() if b"inventory.collected" in x]
        run.per_worker.append(len(lines))
        run.collections.update(int(line["server"]) for line in lines)
    servers = await list_all(client, "/api/server/")
    run.collected = sum(s["inventory_status"] == "collected" for s in servers)
    run.rows_after = await count_rows(ctx.dsn)
    return run


@dataclass
class InvStep:
    workers: int
    runs: list[InvRun] = field(default_factory=list)
    kill: InvRun | None = None


async def inventory_phase(ctx: Ctx, stack: AsyncExitStack) -> tuple[list[InvStep], dict[str, Any]]:
    args = ctx.args
    setup: dict[str, Any] = {}
    async with AsyncExitStack() as lab_stack:
        _progress(f"Inventory lab: {args.bmcs} BMCs on {args.lab_network} (python -m bmclab)…")
        started = time.perf_counter()
        lab, addresses = await start_bmclab(ctx, lab_stack)
        ctx.other_pids["bmclab"] = lab.pid or 0
        _progress(f" {time.perf_counter() - started:.1f} s (pid {lab.pid})\n")
        _progress("  discovery + registration + first inventory (set-up, not timed)…")
        ids, seconds = await register_fleet(ctx, addresses)
        setup = {"servers": len(ids), "seconds": seconds}
        _progress(f" {seconds:.1f} s, {len(ids)} servers\n")
        steps = []
        for count in args.worker_counts:
            step = InvStep(count)
            steps.append(step)
            async with AsyncExitStack() as worker_stack:
                workers = await start_workers(
                    ctx,
                    "inventory",
                    count,
                    worker_stack,
                    # INFO: one `inventory.collected` line per committed collection.
                    {
                        "RACKSMITH_REDFISH_TOTAL": str(args.redfish_total),
                        "RACKSMITH_LOG_LEVEL": "INFO",
                    },
                    f"{count}w",
                )
                for i in range(args.repeat):
                    _progress(f"  inventory {count}w #{i + 1}…")
                    run = await refresh_all(ctx, ids, workers, None)
                    step.runs.append(run)
                    ok = all(c[1] for c in run.checks(len(ids)))
                    _progress(
                        f" {run.seconds:.1f} s, {len(ids) / max(run.seconds, 1e-9):.2f} servers/s, "
                        f"{'ok' if ok else 'WRONG'}\n"
                    )
                if args.kill and count > 1:
                    delay = args.kill_at * statistics.median(r.seconds for r in step.runs)
                    _progress(f"  inventory {count}w, SIGKILL worker {count} at {delay:.1f} s…")
                    run = await refresh_all(ctx, ids, workers, delay)
                    step.kill = run
                    ok = all(c[1] for c in run.checks(len(ids))) and run.killed_at is not None
                    _progress(f" {run.seconds:.1f} s, {'ok' if ok else 'WRONG'}\n")
        ctx.other_pids.pop("bmclab", None)
    return steps, setup


# --- reporting ------------------------------------------------------------------------------------


def _cpu_line(cpu: dict[str, float], wall: float) -> str:
    workers = [v for k, v in cpu.items() if k.startswith("worker")]
    others = ", ".join(f"{k} {v:.1f}" for k, v in cpu.items() if not k.startswith("worker"))
    total = sum(cpu.values())
    cores = len(os.sched_getaffinity(0))
    return (
        f"workers {sum(workers):.1f} ({'/'.join(f'{v:.1f}' for v in workers)}), {others}; "
        f"total {total:.1f} of {wall * cores:.1f} available ({total / max(wall, 1e-9):.2f} cores "
        f"busy of {cores})"
    )


def report_scan(layout: Layout, steps: list[ScanStep], args: argparse.Namespace) -> None:
    n = len(layout.hosts)
    print()
    print(
        f"Scanner: {n} addresses ({len(layout.bmcs)} BMCs, {len(layout.silent)} silent, "
        f"{len(layout.refusing)} refusing), connect timeout {args.connect_timeout:g} s, lab "
        f"latency {args.latency}, RACKSMITH_SCAN_CONCURRENCY={args.scan_concurrency} per process; "
        f"median of {args.repeat}"
    )
    header = f"{'workers':>7} {'seconds':>9} {'addresses/s':>12} {'speed-up':>9} {'correct':>8}"
    print(header)
    print("-" * len(header))
    base = None
    for step in steps:
        med = statistics.median(step.seconds)
        base = base or med
        print(
            f"{step.workers:>7} {med:>9.2f} {n / med:>12.0f} {base / med:>8.2f}x "
            f"{'yes' if all(step.correct) else 'NO':>8}"
        )
    print("CPU seconds per timed run, chunks per worker:")
    for step in steps:
        for i, (sec, cpu, chunks) in enumerate(
            zip(step.seconds, step.cpu, step.chunks, strict=True)
        ):
            print(
                f"  {step.workers}w #{i + 1} ({sec:.2f} s): chunks {'/'.join(map(str, chunks))}; "
                f"{_cpu_line(cpu, sec)}"
            )
    kills = [s for s in steps if s.kill]
    if kills:
        print("Kill test (one worker SIGKILLed mid-scan):")
        for step in kills:
            k = step.kill
            assert k is not None
            verdict = "ok" if k["correct"] and k["killed_at"] is not None else "FAIL"
            print(
                f"  [{verdict}] {step.workers}w, killed at {_at(k['killed_at'])}: "
                f"{k['seconds']:.2f} s, "
                f"{k['nodes']} nodes of {len(layout.bmcs)} (duplicates {k['duplicates']}, "
                f"missing {k['missing']}, extra {k['extra']}), nodes_found {k['nodes_found']}, "
                f"scanned {k['scanned']}/{n}; chunks {'/'.join(map(str, k['chunks']))}"
            )


def _at(seconds: float | None) -> str:
    return "never (run too short)" if seconds is None else f"{seconds:.1f} s"


def _queue(run: InvRun) -> str:
    if not run.pending:
        return "no samples"
    waiting = [p for _, p, _ in run.pending]
    busy = sum(1 for p in waiting if p > 0) / len(waiting)
    return (
        f"num_pending max {max(waiting)}, >0 in {busy:.0%} of samples; "
        f"num_ack_pending max {max(a for _, _, a in run.pending)}"
    )


def report_inventory(steps: list[InvStep], setup: dict[str, Any], args: argparse.Namespace) -> None:
    servers = setup["servers"]
    print()
    print(
        f"Inventory: full re-collection of {servers} servers (lab latency {args.latency}, "
        f"4 requests in flight per BMC), RACKSMITH_REDFISH_TOTAL={args.redfish_total} per "
        f"process (~{args.redfish_total // 4} BMCs at once); median of {args.repeat}; "
        f"set-up (discovery + registration + first inventory) {setup['seconds']:.1f} s"
    )
    header = f"{'workers':>7} {'seconds':>9} {'servers/s':>10} {'speed-up':>9} {'correct':>8}"
    print(header)
    print("-" * len(header))
    base = None
    for step in steps:
        med = statistics.median(r.seconds for r in step.runs)
        base = base or med
        ok = all(c[1] for r in step.runs for c in r.checks(servers))
        print(
            f"{step.workers:>7} {med:>9.2f} {servers / med:>10.2f} {base / med:>8.2f}x "
            f"{'yes' if ok else 'NO':>8}"
        )
    print("CPU seconds and queue depth per timed run:")
    for step in steps:
        for i, r in enumerate(step.runs):
            print(f"  {step.workers}w #{i + 1} ({r.seconds:.1f} s): {_cpu_line(r.cpu, r.seconds)}")
            print(f"      queue: {_queue(r)}")
    print("Checks per run:")
    for step in steps:
        for label, r in [(f"#{i + 1}", r) for i, r in enumerate(step.runs)] + (
            [("kill", step.kill)] if step.kill else []
        ):
            extra = ""
            if label == "kill":
                extra = (
                    f" (worker {step.workers} SIGKILLed at {_at(r.killed_at)}; {r.seconds:.1f} s)"
                )
            for what, ok, detail in r.checks(servers):
                print(
                    f"  [{'ok' if ok else 'FAIL'}] {step.workers}w {label}{extra}: {what}: {detail}"
                )
                extra = ""
            if label == "kill" and r.killed_at is None:
                print(f"  [FAIL] {step.workers}w kill: the worker was not killed (run too short)")


# --- orchestration --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Scanner and inventory throughput with 1, 2 and 4 worker processes.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--phases", default="scanner,inventory", help="phases to run")
    parser.add_argument("--workers", default="1,2,4", help="worker process counts")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs per step")
    parser.add_argument("--scan-network", default="127.0.160.0/19", help="range scanned")
    parser.add_argument(
        "--scan-concurrency",
        type=int,
        default=256,
        help="RACKSMITH_SCAN_CONCURRENCY per scanner process (probes in flight)",
    )
    parser.add_argument("--connect-timeout", type=float, default=1.0, help="silence costs this")
    parser.add_argument("--bmcs", type=int, default=240, help="inventory lab BMCs")
    parser.add_argument("--lab-network", default="127.0.200.0/22", help="inventory lab network")
    parser.add_argument(
        "--redfish-total",
        type=int,
        default=64,
        help="RACKSMITH_REDFISH_TOTAL per inventory process (requests in flight)",
    )
    parser.add_argument("--latency", default="realistic", help="BMC-lab latency (docs/bmclab.md)")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--no-kill", dest="kill", action="store_false", help="skip kill tests")
    parser.add_argument(
        "--kill-at", type=float, default=0.4, help="kill at this share of the timed run"
    )
    parser.add_argument(
        "--ack-wait", type=float, default=10.0, help="RACKSMITH_COMMAND_ACK_WAIT_S for everyone"
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL, help="PostgreSQL server")
    parser.add_argument("--pg-database", default=DEFAULT_PG_DATABASE)
    parser.add_argument("--timeout", type=float, default=600, help="give up on a run after S s")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with logs")
    args = parser.parse_args(argv)
    args.phase_set = {p.strip() for p in args.phases.split(",") if p.strip()}
    if not args.phase_set <= {"scanner", "inventory"}:
        parser.error("--phases: scanner and/or inventory")
    try:
        args.worker_counts = [int(w) for w in args.workers.split(",") if w.strip()]
    except ValueError:
        parser.error("--workers: comma-separated integers")
    if not args.worker_counts or min(args.worker_counts) < 1 or args.repeat < 1:
        parser.error("--workers and --repeat must be positive")
    if not args.database_url.startswith("postgresql"):
        parser.error("--database-url: PostgreSQL only (the production shape)")
    for name in ("scan_network", "lab_network"):
        net = ipaddress.ip_network(getattr(args, name), strict=False)
        if not isinstance(net, ipaddress.IPv4Network) or not net.subnet_of(LOOPBACK):
            parser.error(f"--{name.replace('_', '-')} must be inside 127.0.0.0/8")
    return args


async def run(args: argparse.Namespace) -> bool:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    raise_fd_limit(2 * 8192 + 8 * args.bmcs + 4096)
    async with AsyncExitStack() as stack:
        tmp, keep = work_dir(stack, "racksmith-bench-scale-", args.keep_logs)
        database_url, database = await prepare_database(args.database_url, args.pg_database, tmp)
        dsn = make_url(database_url).set(drivername="postgresql").render_as_string(False)
        nats_server = await embedded_nats(stack, tmp)
        env = platform_env(
            tmp,
            database_url,
            nats_server.client_url(),
            RACKSMITH_SCAN_CONNECT_TIMEOUT_S=str(args.connect_timeout),
            RACKSMITH_SCAN_ALLOWED_NETWORKS=str(LOOPBACK),
            RACKSMITH_INVENTORY_INTERVAL_S="0",  # no scheduled re-collection mid-run
            RACKSMITH_COMMAND_ACK_WAIT_S=str(args.ack_wait),
        )
        _progress("racksmith migrate, createsuperuser, api…")
        started = time.perf_counter()
        password = await migrate_and_create_admin(env, tmp, ADMIN_USERNAME)
        api_port = free_port()
        api = Child(
            "api",
            racksmith("api", "--host", "127.0.0.1", "--port", str(api_port)),
            env,
            tmp / "api.log",
        )
        stack.push_async_callback(api.stop)
        await api.start()
        await api.wait_ready(f"http://127.0.0.1:{api_port}/readyz")
        _progress(f" {time.perf_counter() - started:.1f} s\n")
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=120)
        )
        token = await client.post(
            "/api/token/", json={"username": ADMIN_USERNAME, "password": password}
        )
        token.raise_for_status()
        client.headers["Authorization"] = f"Bearer {token.json()['access']}"
        nc = await nats.connect(nats_server.client_url())
        stack.push_async_callback(nc.close)
        ctx = Ctx(args, tmp, env, client, nc, dsn)
        ctx.other_pids = {"api": api.pid or 0, "nats-server": nats_server.pid or 0}

        print()
        for key, value in machine_description(database):
            print(f"{key:<13} {value}")
        print(flush=True)

        ok = True
        try:
            if "scanner" in args.phase_set:
                layout, scan_steps = await scanner_phase(ctx, stack)
                report_scan(layout, scan_steps, args)
                ok &= all(all(s.correct) for s in scan_steps)
                ok &= all(s.kill["correct"] for s in scan_steps if s.kill)
                print(flush=True)
            if "inventory" in args.phase_set:
                inv_steps, setup = await inventory_phase(ctx, stack)
                report_inventory(inv_steps, setup, args)
                n = setup["servers"]
                for step in inv_steps:
                    for r in step.runs + ([step.kill] if step.kill else []):
                        ok &= all(c[1] for c in r.checks(n))
        except BaseException:
            keep[0] = True
            raise
        if not ok:
            keep[0] = True
            print("\nSome checks FAILED; see above.")
        return ok


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_benchmark(run(args))


if __name__ == "__main__":
    sys.exit(main())
