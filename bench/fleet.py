"""Fleet at scale: discover a dense lab, bulk-register every BMC, collect every inventory.

Starts a BMC lab (default 100 BMCs; ``--full``: 1,000 over a /22) under ``127.23.`` and Racksmith
as separate processes (API, scanner, registrar, inventory worker; SQLite unless
``--database-url`` names a PostgreSQL server), then runs the guide's steps the way a new user
would: scan the lab's network (``--scans`` times in a row), one ``register/?wait=0`` for every
node found, wait for every inventory. It prints:

- BMCs found / lab size for every scan (and the range's ``addresses_unanswered``);
- the bulk ``register/`` answer time;
- servers per minute end to end (scan start → last inventory);
- BMC requests per server (the lab's counters) beside sushy's;
- duplicate command deliveries (the workers' ``racksmith_command_redeliveries_total``);
- CPU seconds per server (every Racksmith process and nats-server);
- one server at a time: a refresh of a sample of servers against a sequential sushy script
  reading the same facts on the same BMCs, measured in the same run (``bench/inventory.py``'s
  baseline).

Run: ``.venv/bin/python bench/fleet.py`` (small) or ``.venv/bin/python bench/fleet.py --full``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import signal
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from api_list import percentile, prepare_postgres
from harness import (
    Child,
    create_auth_profile,
    embedded_nats,
    machine_description,
    migrate_and_create_admin,
    platform_env,
    racksmith,
    raise_fd_limit,
    run_benchmark,
    work_dir,
)
from inventory import (
    FLAVOURS,
    PASSWORD,
    USERNAME,
    SushyWalk,
    count_of,
    cpu_snapshot,
    list_all,
    refresh_sample,
    run_sushy,
)

from bmclab import Lab, LabConfig
from shared.platform.natsserver import free_port

ADMIN_USERNAME = "bench-admin"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
WORKERS = ("scanner", "registrar", "inventory")
TARGET_SERVERS_PER_MIN = 1000.0
TARGET_REGISTER_S = 1.0
TARGET_RATIO = 10.0
POLL_S = 0.5


@dataclass
class Results:
    bmcs: int
    found: list[tuple[int, int, str | None, float]] = field(default_factory=list)
    register_answer_s: float = 0.0
    register_status: int = 0
    registered: int = 0
    servers: int = 0
    collected: int = 0
    scan_s: float = 0.0
    register_inventory_s: float = 0.0
    end_to_end_s: float = 0.0
    requests_per_server: float = 0.0
    redeliveries: float = 0.0
    retries: float = 0.0
    cpu: dict[str, float] = field(default_factory=dict)
    refresh_s: list[float] = field(default_factory=list)
    sushy: list[SushyWalk] = field(default_factory=list)


async def duplicates(health: dict[str, int]) -> tuple[float, float]:
    """Commands delivered more than once, and of those how many were retries the workers asked
    for (a failed handler, a busy BMC); the rest are duplicates. Summed over every worker."""
    totals = {"racksmith_command_redeliveries_total": 0.0, "racksmith_command_retries_total": 0.0}
    async with httpx.AsyncClient(timeout=10) as client:
        for port in health.values():
            text = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
            for line in text.splitlines():
                name = line.split("{", 1)[0]
                if name in totals:
                    totals[name] += float(line.rsplit(" ", 1)[1])
    redelivered, retried = totals.values()
    return redelivered, retried


async def scan(client: httpx.AsyncClient, range_id: int, within_s: float) -> dict[str, Any]:
    (
        await client.post("/api/node_discovery/run_scan/", json={"scan_ranges": [range_id]})
    ).raise_for_status()
    deadline = time.perf_counter() + within_s
    url = f"/api/node_discovery/scan_range/{range_id}/"
    while True:
        await asyncio.sleep(0.2)
        body: dict[str, Any] = (await client.get(url)).json()
        if body["status"] != "scanning":
            return body
        if time.perf_counter() > deadline:
            raise RuntimeError("discovery did not finish in --timeout")


async def drive(
    client: httpx.AsyncClient,
    lab: Lab,
    args: argparse.Namespace,
    results: Results,
    children: dict[str, Child],
    nats_pid: int | None,
) -> dict[str, int]:
    hosts = list(ipaddress.ip_network(args.network).hosts())
    profile = await create_auth_profile(client, USERNAME, PASSWORD)
    created = await client.post(
        "/api/node_discovery/scan_range/",
        json={"name": "bench fleet", "ip_from": str(hosts[0]), "ip_to": str(hosts[-1])}
        | {"ports": [args.port]},
    )
    created.raise_for_status()
    range_id = created.json()["id"]

    for n in range(args.scans):
        print(f"Scan {n + 1}/{args.scans} of {len(hosts)} addresses…", end="", flush=True)
        started = time.perf_counter()
        body = await scan(client, range_id, args.timeout)
        elapsed = time.perf_counter() - started
        if n == 0:
            results.scan_s = elapsed
        results.found.append(
            (body["nodes_found"], body["addresses_unanswered"], body["last_warning"], elapsed)
        )
        print(f" {elapsed:.1f} s, {body['nodes_found']}/{args.bmcs} found ({body['status']})")

    nodes = await list_all(client, "/api/node/", scan_range=range_id)
    addresses = [e.address for e in lab.manifest]
    served_before = sum(lab.bmc(a).requests_served for a in addresses)
    cpu_before = cpu_snapshot(children, nats_pid)
    print(f"Bulk register of {len(nodes)} nodes (?wait=0), then every inventory…", flush=True)
    reg_wall = datetime.now(UTC)
    started = time.perf_counter()
    accepted = await client.post(
        "/api/node/register/",
        params={"wait": 0},
        json={"nodes": [n["id"] for n in nodes], "auth_profile": profile},
    )
    results.register_answer_s = time.perf_counter() - started
    results.register_status = accepted.status_code
    if accepted.status_code not in (200, 202):
        raise RuntimeError(f"register failed: {accepted.status_code} {accepted.text[:500]}")
    deadline = started + args.timeout
    while True:
        await asyncio.sleep(POLL_S)
        registering = await count_of(
            client, "/api/node/", scan_range=range_id, status="registering"
        )
        servers = await count_of(client, "/api/server/")
        pending = await count_of(client, "/api/server/", inventory_status="pending")
        if registering == 0 and pending == 0 and servers > 0:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"not done: {registering} registering, {pending} pending")
    cpu_after = cpu_snapshot(children, nats_pid)
    results.cpu = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}
    if args.database_url.startswith("sqlite"):
        # The machine's PostgreSQL processes are not ours in this run (others come and go).
        results.cpu.pop("postgres", None)
    listed = await list_all(client, "/api/server/")
    nodes = await list_all(client, "/api/node/", scan_range=range_id)
    results.registered = sum(n["status"] == "registered" for n in nodes)
    results.servers = len(listed)
    results.collected = sum(s["inventory_status"] == "collected" for s in listed)
    last = max(
        (
            datetime.fromisoformat(s["last_inventory_at"].replace("Z", "+00:00"))
            for s in listed
            if s["last_inventory_at"]
        ),
        default=None,
    )
    polled = time.perf_counter() - started
    results.register_inventory_s = (last - reg_wall).total_seconds() if last else polled
    # End to end: the last scan's time (what a first scan costs) plus register → last inventory.
    results.end_to_end_s = results.scan_s + results.register_inventory_s
    served = sum(lab.bmc(a).requests_served for a in addresses) - served_before
    results.requests_per_server = served / max(1, len(listed))
    node_ip = {n["id"]: n["ip"] for n in nodes}
    return {node_ip[s["node"]]: s["id"] for s in listed if s["node"] in node_ip}


def _verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def report(r: Results, args: argparse.Namespace) -> None:
    print()
    print(f"Lab: {r.bmcs} BMCs on {args.network}, latency {args.latency!r}")
    print()
    print("Discovery (every scan of the lab's network):")
    for n, (found, unanswered, warning, seconds) in enumerate(r.found, 1):
        note = f"; warning: {warning}" if warning else ""
        print(
            f"  scan {n:2d}: {found}/{r.bmcs} BMCs found, {unanswered} unanswered, "
            f"{seconds:.1f} s{note}"
        )
    every = all(found == r.bmcs for found, *_ in r.found)
    print(f"  found = lab size in every scan: {_verdict(every)}")
    print()
    print(
        f"Bulk register/ of {r.registered} nodes answered {r.register_status} in "
        f"{r.register_answer_s * 1000:.0f} ms (target < {TARGET_REGISTER_S:.0f} s: "
        f"{_verdict(r.register_answer_s < TARGET_REGISTER_S)})"
    )
    per_min = r.servers / max(r.end_to_end_s, 1e-9) * 60
    print(
        f"End to end (first scan + register → last inventory): {r.end_to_end_s:.1f} s for "
        f"{r.servers} servers ({r.collected} collected) = {per_min:.0f} servers/min "
        f"(target >= {TARGET_SERVERS_PER_MIN:.0f}: {_verdict(per_min >= TARGET_SERVERS_PER_MIN)})"
    )
    reg_per_min = r.servers / max(r.register_inventory_s, 1e-9) * 60
    print(
        f"  of which register → last inventory: {r.register_inventory_s:.1f} s "
        f"({reg_per_min:.0f} servers/min); scan {r.scan_s:.1f} s"
    )
    sushy_requests = [w.requests for w in r.sushy]
    sushy_avg = sum(sushy_requests) / max(1, len(sushy_requests))
    print(
        f"BMC requests per server: Racksmith {r.requests_per_server:.1f} "
        f"(registration + inventory), sushy {sushy_avg:.1f} (inventory read, login/logout incl.)"
    )
    print(
        f"Duplicate command deliveries (no kills): {r.redeliveries - r.retries:.0f} "
        f"({r.redeliveries:.0f} redeliveries, {r.retries:.0f} of them retries a worker asked for)"
    )
    total_cpu = sum(v for k, v in r.cpu.items() if k not in ("bench + lab", "postgres"))
    print(
        f"CPU per server (Racksmith processes + nats-server, register → last inventory): "
        f"{total_cpu / max(1, r.servers) * 1000:.0f} ms"
    )
    for name, seconds in sorted(r.cpu.items(), key=lambda kv: -kv[1]):
        share = seconds / max(r.register_inventory_s, 1e-9)
        print(f"  {name:<14} {seconds:7.1f} CPU-s ({share:5.0%} of a core)")
    walks = [w.seconds for w in r.sushy if w.resources.get("system")]
    if walks and r.refresh_s:
        s50, ours = percentile(walks, 50), percentile(r.refresh_s, 50)
        ratio = s50 / max(ours, 1e-9)
        print()
        print(f"One server at a time ({len(r.refresh_s)} servers, same BMCs):")
        print(f"  sequential sushy script p50 {s50:.2f} s, Racksmith refresh p50 {ours:.2f} s")
        print(
            f"  sushy / Racksmith {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x: "
            f"{_verdict(ratio >= TARGET_RATIO)})"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Discover, bulk-register and inventory a dense BMC lab.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--bmcs", type=int, default=100, help="lab BMCs")
    parser.add_argument("--full", action="store_true", help="1,000 BMCs over a /22")
    parser.add_argument("--network", default="127.23.100.0/22", help="lab network (in 127/8)")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--latency", default="realistic", help="lab latency spec (docs/bmclab.md)")
    parser.add_argument("--scans", type=int, default=1, help="scans of the network in a row")
    parser.add_argument("--seed", type=int, default=23)
    parser.add_argument("--sushy-sample", type=int, default=5, help="BMCs walked with sushy")
    parser.add_argument(
        "--database-url", default="sqlite", help="'sqlite', or a PostgreSQL server URL"
    )
    parser.add_argument("--pg-database", default="racksmith_bench_fleet")
    parser.add_argument("--timeout", type=float, default=900, help="give up on a phase after S s")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with logs")
    args = parser.parse_args(argv)
    if args.full:
        args.bmcs = 1000
    network = ipaddress.ip_network(args.network, strict=False)
    if not isinstance(network, ipaddress.IPv4Network) or not network.subnet_of(LOOPBACK):
        parser.error(f"--network {args.network} is not inside 127.0.0.0/8")
    if args.bmcs > network.num_addresses - 2:
        parser.error(f"--network {args.network} has room for {network.num_addresses - 2} BMCs")
    args.network = str(network)
    return args


async def run(args: argparse.Namespace) -> Results:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    raise_fd_limit(8 * args.bmcs + 1024)
    results = Results(bmcs=args.bmcs)
    async with AsyncExitStack() as stack:
        tmp, keep = work_dir(stack, "racksmith-bench-fleet-", args.keep_logs)
        config = LabConfig(
            count=args.bmcs,
            network=args.network,
            port=args.port,
            flavours=FLAVOURS,
            username=USERNAME,
            password=PASSWORD,
            latency=args.latency,
            seed=args.seed,
        )
        print(f"Starting a BMC lab of {args.bmcs} BMCs on {args.network}…", end="", flush=True)
        started = time.perf_counter()
        lab = await stack.enter_async_context(Lab(config))
        print(f" {time.perf_counter() - started:.1f} s", flush=True)

        if args.database_url.startswith("sqlite"):
            database_url, database = f"sqlite+aiosqlite:///{tmp / 'racksmith.db'}", "SQLite"
        else:
            target = await prepare_postgres(args.database_url, args.pg_database)
            database_url, database = target.app_url, target.description
        for key, value in machine_description(database):
            print(f"{key:<13} {value}")

        step = max(1, args.bmcs // max(1, args.sushy_sample))
        sample = [e.address for e in lab.manifest[::step][: args.sushy_sample]]
        print(f"sushy: walking {len(sample)} BMCs…", end="", flush=True)
        results.sushy = await run_sushy(lab, sample, args.port)
        print(" done", flush=True)

        nats_server = await embedded_nats(stack, tmp)
        env = platform_env(
            tmp,
            database_url,
            nats_server.client_url(),
            RACKSMITH_SCAN_ALLOWED_NETWORKS=args.network,
            RACKSMITH_INVENTORY_INTERVAL_S="0",
        )
        password = await migrate_and_create_admin(env, tmp, ADMIN_USERNAME)
        children: dict[str, Child] = {}
        api_port = free_port()
        api = Child(
            "api",
            racksmith("api", "--host", "127.0.0.1", "--port", str(api_port)),
            env,
            tmp / "api.log",
        )
        stack.push_async_callback(api.stop)
        await api.start()
        children["api"] = api
        health: dict[str, int] = {}
        for kind in WORKERS:
            health[kind] = free_port()
            child = Child(
                kind,
                racksmith("worker", kind),
                {**env, "RACKSMITH_WORKER_HEALTH_PORT": str(health[kind])},
                tmp / f"{kind}.log",
            )
            stack.push_async_callback(child.stop)
            await child.start()
            children[kind] = child
        await api.wait_ready(f"http://127.0.0.1:{api_port}/readyz")
        for kind, port in health.items():
            await children[kind].wait_ready(f"http://127.0.0.1:{port}/readyz")

        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=300)
        )
        token = await client.post(
            "/api/token/", json={"username": ADMIN_USERNAME, "password": password}
        )
        token.raise_for_status()
        client.headers["Authorization"] = f"Bearer {token.json()['access']}"
        try:
            by_address = await drive(client, lab, args, results, children, nats_server.pid)
            results.redeliveries, results.retries = await duplicates(health)
            ids = [by_address[a] for a in sample if a in by_address]
            for server_id in ids:  # one server at a time
                results.refresh_s += await refresh_sample(client, [server_id], args.timeout)
        except BaseException:
            keep[0] = True
            raise
        report(results, args)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(run(parse_args(sys.argv[1:] if argv is None else list(argv))))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
