"""Benchmark: registration + inventory — end to end against a BMC lab, and ``sushy``.

In one run, on one BMC lab (``--bmcs`` BMCs, default 500, in ``--network``, default
``127.0.96.0/22``, clear of ``bench/scan.py``'s ranges; the lab's ``realistic`` latency —
lognormal, median 200 ms, p99 2 s — its in-flight limit of 4 requests and session limit of 8 per
BMC; four vendor flavours round-robin):

1. **Baseline**: the ``sushy`` library walks the inventory of a sample of the same BMCs
   (``--sushy-sample``, default 20, spread evenly over the lab), each BMC walked sequentially as a
   script using sushy would (session auth, ``verify=False``): service root, the ComputerSystem,
   processors, memory, ethernet interfaces, storage (+ drives and volumes) or SimpleStorage, and
   UpdateService firmware / software inventory. The sample BMCs are walked at the same time (one
   thread each), so the phase takes about as long as the slowest walk; each walk's wall time is the
   per-server figure.
2. **Racksmith**, as separate processes — ``racksmith api`` and one ``racksmith worker`` each of
   ``scanner``, ``registrar`` and ``inventory`` — against an embedded nats-server and PostgreSQL
   (``--database-url``; the script creates and empties its own database ``--pg-database``), or a
   SQLite file (``--database-url sqlite``). Driven over the REST API as the guide does: auth profile
   + credential, scan range over the whole network, ``run_scan``, poll until the range is ready;
   then ``POST /api/node/register/?wait=0`` with every discovered node id, and poll
   ``/api/server/`` until every node is registered and no server is ``pending``. Timed: discovery;
   registration + inventory (from the register request to the last server's
   ``last_inventory_at``); end-to-end servers/second (run_scan to the last ``last_inventory_at``).
   Per server (event times, replayed from the RACKSMITH_EVENTS stream): node ``registering`` →
   its server's ``inventoried`` (queueing behind the other servers included), p50/p99.
3. **Racksmith, same BMCs as sushy**: ``POST /api/server/refresh/`` for the sample's servers (fewer
   than one inventory worker's concurrency, so nothing queues) and the time from the request to each
   server's new ``last_inventory_at``: the per-server wall time comparable with sushy's walk, and
   the ratio (target: Racksmith at least 10x better).

Correctness is checked, not assumed: every lab BMC must be found exactly once, registered exactly
once (one ``node.registered`` event each), have exactly one server (one ``server.created``) with
the lab manifest's serial number, and end ``collected``; the lab's session limit must never have
been exceeded. GETs per server (the lab's request counters) are printed for both sides.

    /work/venv/bin/python bench/inventory.py                          # PostgreSQL on 127.0.0.1
    /work/venv/bin/python bench/inventory.py --database-url sqlite    # a SQLite file
    /work/venv/bin/python bench/inventory.py --bmcs 100 --sushy-sample 8   # quicker

A benchmark that prints figures and ratios, not a test: nothing fails on wall-clock time. All
traffic stays on 127.0.0.0/8. Ctrl-C / SIGTERM stop every process it started.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import json
import os
import signal
import sys
import time
import warnings
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import nats
from api_list import percentile, prepare_postgres
from harness import (
    Child,
    cpu_seconds,
    create_auth_profile,
    die_with_parent,
    embedded_nats,
    machine_description,
    migrate_and_create_admin,
    platform_env,
    postgres_pids,
    racksmith,
    raise_fd_limit,
    run_benchmark,
    work_dir,
)

from bmclab import Lab, LabConfig
from shared.platform.natsserver import free_port

THIS_SCRIPT = Path(__file__).resolve()
REPO_ROOT = THIS_SCRIPT.parent.parent
DEFAULT_DATABASE_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/"
DEFAULT_PG_DATABASE = "racksmith_bench_inventory"
ADMIN_USERNAME = "bench-admin"
LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")
FLAVOURS = ("dell", "hpe", "supermicro", "openbmc")
USERNAME, PASSWORD = "root", "calvin"
TARGET_RATIO = 10.0
POLL_S = 0.5


# --- processes ------------------------------------------------------------------------------------


def _postgres_cpu() -> float:
    return sum(cpu_seconds(pid) for pid in postgres_pids())


def cpu_snapshot(children: dict[str, Child], nats_pid: int | None) -> dict[str, float]:
    snapshot = {name: cpu_seconds(c.pid or 0) for name, c in children.items()}
    snapshot["nats-server"] = cpu_seconds(nats_pid or 0)
    snapshot["postgres"] = _postgres_cpu()
    snapshot["bench + lab"] = cpu_seconds(os.getpid())
    return snapshot


# --- the sushy baseline ---------------------------------------------------------------------------


@dataclass
class SushyWalk:
    address: str
    seconds: float = 0.0
    requests: int = 0
    resources: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)


def sushy_walk(url: str, address: str) -> SushyWalk:
    """What a script using sushy does to read one server's inventory, sequentially."""
    import sushy
    from sushy import auth as sushy_auth

    walk = SushyWalk(address)
    started = time.perf_counter()
    try:
        root = sushy.Sushy(
            f"{url}/redfish/v1/",
            verify=False,
            auth=sushy_auth.SessionAuth(USERNAME, PASSWORD),
        )
    except Exception as exc:
        walk.seconds = time.perf_counter() - started
        walk.errors.append(f"connect: {type(exc).__name__}: {str(exc)[:200]}")
        return walk

    def part(name: str, read: Any) -> None:
        try:
            walk.resources[name] += read()
        except Exception as exc:  # a flavour without this resource: sushy raises, we go on
            walk.errors.append(f"{name}: {type(exc).__name__}")

    try:
        systems = root.get_system_collection()
        for identity in systems.members_identities:
            system = root.get_system(identity)
            walk.resources["system"] += 1
            part("processors", lambda s=system: len(s.processors.get_members()))
            part("memory", lambda s=system: _raw_collection(root, s, "Memory"))
            part("ethernet", lambda s=system: len(s.ethernet_interfaces.get_members()))

            def storage(s: Any = system) -> int:
                count = 0
                for member in s.storage.get_members():
                    count += 1 + len(member.drives)
                    with contextlib.suppress(Exception):  # not every controller has volumes
                        count += len(member.volumes.get_members())
                return count

            def simple_storage(s: Any = system) -> int:
                return len(s.simple_storage.get_members())

            part("storage", storage)
            if walk.errors and walk.errors[-1].startswith("storage"):
                part("simple_storage", simple_storage)

        def inventory(name: str) -> int:
            # OpenBMC's UpdateService has no Actions: sushy's class refuses it, so its
            # connector reads the collection (as a script would have to).
            update = root._conn.get("/redfish/v1/UpdateService").json()
            if name not in update:
                raise LookupError(name)
            service = type("R", (), {"json": update})()
            return _raw_collection(root, service, name)

        part("firmware", lambda: inventory("FirmwareInventory"))
        if walk.errors and walk.errors[-1].startswith("firmware"):
            part("software", lambda: inventory("SoftwareInventory"))
    finally:
        walk.seconds = time.perf_counter() - started
        with contextlib.suppress(Exception):
            root._auth.close()  # log out (outside the timed walk)
            root._auth = None
    return walk


def _raw_collection(root: Any, resource: Any, name: str) -> int:
    """sushy has no class for this collection (Memory): its connector GETs it and each member."""
    collection = root._conn.get(resource.json[name]["@odata.id"]).json()
    for member in collection.get("Members", []):
        root._conn.get(member["@odata.id"]).json()
    return len(collection.get("Members", []))


async def run_sushy(lab: Lab, sample: list[str], port: int) -> list[SushyWalk]:
    """The walks in a child process (one thread per BMC), so they share no GIL with the lab."""
    before = {a: lab.bmc(a).requests_served for a in sample}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(THIS_SCRIPT),
        "--sushy-walk",
        *(f"https://{a}:{port}" for a in sample),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        start_new_session=True,
        preexec_fn=die_with_parent,
    )
    try:
        out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    if process.returncode != 0:
        raise RuntimeError(f"sushy walks failed:\n{err.decode(errors='replace')[-3000:]}")
    walks = [
        SushyWalk(w["address"], w["seconds"], 0, Counter(w["resources"]), w["errors"])
        for w in json.loads(out)
    ]
    for walk in walks:
        # Includes the session login/logout: two requests that are not GETs.
        walk.requests = lab.bmc(walk.address).requests_served - before[walk.address]
    return walks


def sushy_main(urls: list[str]) -> int:
    from concurrent.futures import ThreadPoolExecutor

    import urllib3

    urllib3.disable_warnings()
    warnings.filterwarnings("ignore")
    with ThreadPoolExecutor(max_workers=max(1, len(urls))) as pool:
        walks = list(pool.map(lambda u: sushy_walk(u, u.split("//")[1].split(":")[0]), urls))
    json.dump(
        [
            {
                "address": w.address,
                "seconds": w.seconds,
                "resources": dict(w.resources),
                "errors": w.errors,
            }
            for w in walks
        ],
        sys.stdout,
    )
    return 0


# --- events ---------------------------------------------------------------------------------------


@dataclass
class EventLog:
    """Events replayed from the RACKSMITH_EVENTS stream (deduplicated by ``Nats-Msg-Id``)."""

    events: list[tuple[str, int, str, dict[str, Any], datetime]] = field(default_factory=list)

    async def replay(self, nc: Any, subjects: Sequence[str]) -> None:
        js = nc.jetstream()
        for subject in subjects:
            sub = await js.subscribe(subject, ordered_consumer=True)
            try:
                while True:
                    try:
                        msg = await sub.next_msg(timeout=1.0)
                    except TimeoutError:
                        break
                    parts = msg.subject.split(".")  # racksmith.evt.<entity>.<id>.<change>
                    body = json.loads(msg.data)
                    when = datetime.fromisoformat(body["time"])
                    self.events.append((parts[2], int(parts[3]), parts[4], body["data"], when))
            finally:
                await sub.unsubscribe()

    def of(self, entity: str, change: str) -> list[tuple[int, dict[str, Any], datetime]]:
        return [(i, d, t) for e, i, c, d, t in self.events if e == entity and c == change]


# --- the run --------------------------------------------------------------------------------------


@dataclass
class Results:
    bmcs: int
    discovery_s: float = 0.0
    scanned: int = 0
    nodes_found: int = 0
    register_inventory_s: float = 0.0
    end_to_end_s: float = 0.0
    servers: int = 0
    collected: int = 0
    per_server_bulk_s: list[float] = field(default_factory=list)
    per_server_inventory_only_s: list[float] = field(default_factory=list)
    refresh_s: list[float] = field(default_factory=list)
    requests_per_server: float = 0.0
    checks: list[tuple[str, bool, str]] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    sushy: list[SushyWalk] = field(default_factory=list)
    max_sessions: int = 0

    def check(self, what: str, ok: bool, detail: str = "") -> None:
        self.checks.append((what, ok, detail))


def _utc(value: str | None) -> datetime | None:
    if value is None:
        return None
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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


async def count_of(client: httpx.AsyncClient, path: str, **params: Any) -> int:
    response = await client.get(path, params={**params, "page_size": 1})
    response.raise_for_status()
    return int(response.json()["count"])


async def drive_racksmith(
    client: httpx.AsyncClient,
    lab: Lab,
    args: argparse.Namespace,
    nc: Any,
    results: Results,
    progress: Any,
) -> dict[str, int]:
    """The guide's steps; returns the server id per BMC address."""
    log = EventLog()
    network = ipaddress.ip_network(args.network)
    hosts = list(network.hosts())
    profile = await create_auth_profile(client, USERNAME, PASSWORD)
    created = await client.post(
        "/api/node_discovery/scan_range/",
        json={
            "name": "bench inventory",
            "ip_from": str(hosts[0]),
            "ip_to": str(hosts[-1]),
            "ports": [args.port],
        },
    )
    created.raise_for_status()
    range_id = created.json()["id"]

    progress("Discovery (run_scan, poll until ready)…")
    wall_start = datetime.now(UTC)
    started = time.perf_counter()
    (
        await client.post("/api/node_discovery/run_scan/", json={"scan_ranges": [range_id]})
    ).raise_for_status()
    deadline = started + args.timeout
    while True:
        await asyncio.sleep(0.2)
        body = (await client.get(f"/api/node_discovery/scan_range/{range_id}/")).json()
        if body["status"] != "scanning":
            break
        if time.perf_counter() > deadline:
            raise RuntimeError("discovery did not finish in --timeout")
    results.discovery_s = time.perf_counter() - started
    results.scanned, results.nodes_found = body["addresses_scanned"], body["nodes_found"]
    progress(f" {results.discovery_s:.1f} s ({body['status']}, {body['nodes_found']} nodes)\n")

    nodes = await list_all(client, "/api/node/", scan_range=range_id)
    ips = [n["ip"] for n in nodes]
    expected = {e.address for e in lab.manifest}
    results.check(
        "discovery: every BMC found exactly once, nothing else",
        set(ips) == expected and len(ips) == len(expected),
        f"{len(ips)} nodes, {len(set(ips))} distinct, expected {len(expected)}",
    )

    served_before = sum(lab.bmc(a).requests_served for a in expected)
    progress(f"Registration + inventory of {len(nodes)} nodes (register/?wait=0, poll)…")
    reg_wall = datetime.now(UTC)
    reg_started = time.perf_counter()
    accepted = await client.post(
        "/api/node/register/",
        params={"wait": 0},
        json={"nodes": [n["id"] for n in nodes], "auth_profile": profile},
    )
    if accepted.status_code not in (200, 202):
        raise RuntimeError(f"register failed: {accepted.status_code} {accepted.text[:500]}")
    deadline = reg_started + args.timeout
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
            raise RuntimeError(
                f"not done in --timeout: {registering} registering, {pending} pending"
            )
    polled_s = time.perf_counter() - reg_started
    listed = await list_all(client, "/api/server/")
    nodes = await list_all(client, "/api/node/", scan_range=range_id)
    last = max(
        (_utc(s["last_inventory_at"]) for s in listed if s["last_inventory_at"]), default=None
    )
    results.register_inventory_s = (last - reg_wall).total_seconds() if last else polled_s
    results.end_to_end_s = (last - wall_start).total_seconds() if last else 0.0
    results.servers = len(listed)
    results.collected = sum(s["inventory_status"] == "collected" for s in listed)
    served = sum(lab.bmc(a).requests_served for a in expected) - served_before
    results.requests_per_server = served / max(1, len(listed))
    progress(
        f" {results.register_inventory_s:.1f} s to the last last_inventory_at "
        f"(poll saw it at {polled_s:.1f} s)\n"
    )

    # Let the outbox relay the last events, then read them back from the stream.
    await asyncio.sleep(2.5)
    await log.replay(
        nc,
        [f"racksmith.evt.{e}" for e in ("node.*.registering", "node.*.registered")]
        + [f"racksmith.evt.{e}" for e in ("server.*.created", "server.*.inventoried")],
    )
    statuses = Counter(n["status"] for n in nodes)
    results.check(
        "registration: every node registered",
        statuses == Counter({"registered": len(expected)}),
        ", ".join(f"{k} {v}" for k, v in sorted(statuses.items()))
        + "".join(f"; {n['ip']}: {n['error']}" for n in nodes if n["error"])[:300],
    )
    node_ids = {n["id"] for n in nodes}
    registered = Counter(i for i, _, _ in log.of("node", "registered") if i in node_ids)
    results.check(
        "registration: one node.registered event per node",
        registered == Counter(dict.fromkeys(node_ids, 1)),
        f"{len(registered)} nodes with events, max {max(registered.values(), default=0)} each",
    )
    created_events = log.of("server", "created")
    per_node = Counter(d.get("node") for _, d, _ in created_events)
    results.check(
        "servers: one server.created per node, one server per node",
        per_node == Counter(dict.fromkeys(node_ids, 1))
        and Counter(s["node"] for s in listed) == Counter(dict.fromkeys(node_ids, 1)),
        f"{len(listed)} servers, {len(created_events)} created events",
    )
    node_ip = {n["id"]: n["ip"] for n in nodes}
    serial_of = {e.address: e.serial for e in lab.manifest}
    wrong_serial = [
        s["id"] for s in listed if serial_of.get(node_ip.get(s["node"], "")) != s["serial_number"]
    ]
    results.check(
        "inventory: every server collected, serial as in the lab manifest",
        results.collected == len(expected) and not wrong_serial,
        f"{results.collected} collected, "
        f"{sum(s['inventory_status'] == 'error' for s in listed)} error, "
        f"{len(wrong_serial)} wrong serial",
    )

    # Per server: node `registering` → its server `inventoried` (event times, set at commit).
    registering_at = {i: t for i, _, t in log.of("node", "registering")}
    inventory_queued = {i: t for i, _, t in created_events}
    node_of = {i: d.get("node") for i, d, _ in created_events}
    for server_id, _, at in log.of("server", "inventoried"):
        node = node_of.get(server_id)
        if node in registering_at:
            results.per_server_bulk_s.append((at - registering_at[node]).total_seconds())
        if server_id in inventory_queued:
            results.per_server_inventory_only_s.append(
                (at - inventory_queued[server_id]).total_seconds()
            )
    return {node_ip[s["node"]]: s["id"] for s in listed if s["node"] in node_ip}


async def refresh_sample(
    client: httpx.AsyncClient, server_ids: list[int], within_s: float
) -> list[float]:
    """Per-server wall time of a collection with nothing queued: request → last_inventory_at."""
    before = {
        i: (await client.get(f"/api/server/{i}/")).json()["last_inventory_at"] for i in server_ids
    }
    requested = datetime.now(UTC)
    (await client.post("/api/server/refresh/", json={"servers": server_ids})).raise_for_status()
    done: dict[int, float] = {}
    deadline = time.perf_counter() + within_s
    while len(done) < len(server_ids) and time.perf_counter() < deadline:
        await asyncio.sleep(0.25)
        for i in server_ids:
            if i in done:
                continue
            body = (await client.get(f"/api/server/{i}/")).json()
            if body["last_inventory_at"] != before[i] and body["last_inventory_at"]:
                at = _utc(body["last_inventory_at"])
                assert at is not None
                done[i] = (at - requested).total_seconds()
    return [done[i] for i in server_ids if i in done]


# --- reporting ------------------------------------------------------------------------------------


def _pcts(samples: Sequence[float]) -> str:
    if not samples:
        return "n/a"
    return (
        f"p50 {percentile(samples, 50):6.2f} s   p99 {percentile(samples, 99):6.2f} s   "
        f"max {max(samples):6.2f} s   (n={len(samples)})"
    )


def report(results: Results, args: argparse.Namespace) -> None:
    r = results
    walks = [w.seconds for w in r.sushy if not w.errors or w.resources["system"]]
    print()
    print(f"Lab: {r.bmcs} BMCs, latency {args.latency!r}, session limit {args.session_limit}")
    print()
    print("Racksmith (1 api + 1 scanner + 1 registrar + 1 inventory worker):")
    print(
        f"  discovery                    {r.discovery_s:7.1f} s   {r.scanned} addresses, "
        f"{r.nodes_found} nodes ({r.scanned / max(r.discovery_s, 1e-9):.0f} addresses/s)"
    )
    print(
        f"  registration + inventory     {r.register_inventory_s:7.1f} s   {r.servers} servers, "
        f"{r.servers / max(r.register_inventory_s, 1e-9):.1f} servers/s"
    )
    print(
        f"  end to end (scan → last inv) {r.end_to_end_s:7.1f} s   "
        f"{r.servers / max(r.end_to_end_s, 1e-9):.1f} servers/s"
    )
    amortised = r.register_inventory_s / max(1, r.servers)
    print(f"  amortised per server         {amortised:7.3f} s   (registration+inventory / N)")
    print(f"  BMC requests per server      {r.requests_per_server:7.1f}     (lab counters)")
    for label, samples in (
        ("registering -> inventoried (bulk, queueing included)", r.per_server_bulk_s),
        ("inventory queued -> inventoried (bulk)", r.per_server_inventory_only_s),
        ("refresh of the sushy sample (nothing queued)", r.refresh_s),
    ):
        print(f"  per server, {label:<55} {_pcts(samples)}")
    print()
    print(f"sushy {_sushy_version()} (sequential walk per BMC, {len(r.sushy)} BMCs):")
    print(f"  per server wall time   {_pcts(walks)}")
    requests = [w.requests for w in r.sushy]
    if requests:
        print(
            f"  BMC requests per server  {sum(requests) / len(requests):.1f} (incl. login/logout)"
        )
    parts: Counter[str] = Counter()
    for w in r.sushy:
        parts.update(w.resources)
    print(f"  resources read (all sample BMCs): {dict(parts)}")
    errors = Counter(e for w in r.sushy for e in w.errors)
    if errors:
        print(f"  parts sushy could not read: {dict(errors)}")
    print()
    if walks and r.refresh_s:
        header = f"{'per-server wall time':<46} {'p50':>8} {'p99':>8}"
        print(header)
        print("-" * len(header))
        rows = [
            ("sushy, sequential walk", walks),
            ("Racksmith, refresh of the same BMCs", r.refresh_s),
            ("Racksmith, bulk registering → inventoried", r.per_server_bulk_s),
        ]
        for name, samples in rows:
            print(f"{name:<46} {percentile(samples, 50):7.2f}s {percentile(samples, 99):7.2f}s")
        print(f"{'Racksmith, amortised (bulk time / N)':<46} {amortised:7.3f}s")
        s50, s99 = percentile(walks, 50), percentile(walks, 99)
        ratio50 = s50 / percentile(r.refresh_s, 50)
        ratio99 = s99 / percentile(r.refresh_s, 99)
        amortised_ratio = s50 / max(amortised, 1e-9)
        print()
        print(
            f"sushy / Racksmith, same BMCs, one server at a time: p50 {ratio50:.1f}x, "
            f"p99 {ratio99:.1f}x   (target >= {TARGET_RATIO:.0f}x: "
            f"{'met' if ratio50 >= TARGET_RATIO else 'MISSED'})"
        )
        print(
            f"sushy p50 / Racksmith amortised per server (fleet throughput): {amortised_ratio:.1f}x"
            f"   (target >= {TARGET_RATIO:.0f}x: "
            f"{'met' if amortised_ratio >= TARGET_RATIO else 'MISSED'})"
        )
    print()
    print(f"Max concurrent sessions on any lab BMC: {r.max_sessions} (limit {args.session_limit})")
    if r.cpu:
        wall = r.register_inventory_s
        print(
            f"CPU seconds during registration + inventory ({wall:.1f} s wall, 2 cores = "
            f"{2 * wall:.0f} CPU-s available):"
        )
        for name, seconds in sorted(r.cpu.items(), key=lambda kv: -kv[1]):
            print(f"  {name:<22} {seconds:7.1f} s  ({seconds / max(wall, 1e-9):5.0%} of a core)")
    print()
    print("Checks:")
    for what, ok, detail in r.checks:
        print(f"  [{'ok' if ok else 'FAIL'}] {what}: {detail}")


def _sushy_version() -> str:
    with contextlib.suppress(Exception):
        import sushy

        return str(sushy.__version__)
    return "?"


# --- orchestration ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Registration + inventory against a BMC lab, and sushy on the same BMCs.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--bmcs", type=int, default=500, help="lab BMCs")
    parser.add_argument("--network", default="127.0.96.0/22", help="lab network (in 127/8)")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--latency", default="realistic", help="lab latency spec (docs/bmclab.md)")
    parser.add_argument("--session-limit", type=int, default=8, help="lab sessions per BMC")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--sushy-sample", type=int, default=20, help="BMCs walked with sushy")
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="PostgreSQL server URL (own database --pg-database), or 'sqlite'",
    )
    parser.add_argument("--pg-database", default=DEFAULT_PG_DATABASE)
    parser.add_argument("--timeout", type=float, default=600, help="give up on a phase after S s")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with logs")
    args = parser.parse_args(argv)
    network = ipaddress.ip_network(args.network, strict=False)
    if not isinstance(network, ipaddress.IPv4Network) or not network.subnet_of(LOOPBACK):
        parser.error(f"--network {args.network} is not inside 127.0.0.0/8")
    if args.bmcs > network.num_addresses - 2:
        parser.error(f"--network {args.network} has room for {network.num_addresses - 2} BMCs")
    args.network = str(network)
    return args


def _progress(text: str) -> None:
    print(text, end="", flush=True)


async def run(args: argparse.Namespace) -> Results:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    raise_fd_limit(8 * args.bmcs + 1024)
    results = Results(bmcs=args.bmcs)
    async with AsyncExitStack() as stack:
        tmp, keep = work_dir(stack, "racksmith-bench-inventory-", args.keep_logs)

        config = LabConfig(
            count=args.bmcs,
            network=args.network,
            port=args.port,
            flavours=FLAVOURS,
            username=USERNAME,
            password=PASSWORD,
            latency=args.latency,
            seed=args.seed,
            session_limit=args.session_limit,
        )
        _progress(f"Starting a BMC lab of {args.bmcs} BMCs on {args.network}…")
        started = time.perf_counter()
        lab = await stack.enter_async_context(Lab(config))
        _progress(f" {time.perf_counter() - started:.1f} s\n")

        if args.database_url == "sqlite" or args.database_url.startswith("sqlite"):
            database_url, database = f"sqlite+aiosqlite:///{tmp / 'racksmith.db'}", "SQLite"
        else:
            target = await prepare_postgres(args.database_url, args.pg_database)
            database_url, database = target.app_url, target.description
            with contextlib.suppress(Exception):
                driver = await target.connect_driver()
                database = await driver.version()
                await driver.close()

        print()
        for key, value in machine_description(database):
            print(f"{key:<13} {value}")
        print(f"{'sushy':<13} {_sushy_version()}")
        print(flush=True)

        # 1. The baseline, on an idle lab.
        step = max(1, args.bmcs // max(1, args.sushy_sample))
        sample = [e.address for e in lab.manifest[::step][: args.sushy_sample]]
        _progress(f"sushy: walking {len(sample)} BMCs (sequential per BMC, in parallel)…")
        started = time.perf_counter()
        results.sushy = await run_sushy(lab, sample, args.port)
        _progress(f" {time.perf_counter() - started:.1f} s\n")

        # 2. Racksmith.
        nats_server = await embedded_nats(stack, tmp)
        env = platform_env(
            tmp,
            database_url,
            nats_server.client_url(),
            RACKSMITH_SCAN_ALLOWED_NETWORKS=args.network,
            RACKSMITH_INVENTORY_INTERVAL_S="0",  # no scheduled re-collection mid-run
        )
        _progress("racksmith migrate, createsuperuser, api, workers…")
        started = time.perf_counter()
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
        for kind in ("scanner", "registrar", "inventory"):
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
        _progress(f" {time.perf_counter() - started:.1f} s\n")
        print(
            "  pids: " + ", ".join(f"{name} {c.pid}" for name, c in children.items()),
            flush=True,
        )

        nc = await nats.connect(nats_server.client_url())
        stack.push_async_callback(nc.close)

        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=120)
        )
        token = await client.post(
            "/api/token/", json={"username": ADMIN_USERNAME, "password": password}
        )
        token.raise_for_status()
        client.headers["Authorization"] = f"Bearer {token.json()['access']}"

        cpu_before = cpu_snapshot(children, nats_server.pid)
        try:
            by_address = await drive_racksmith(client, lab, args, nc, results, _progress)
        except BaseException:
            keep[0] = True
            raise
        cpu_after = cpu_snapshot(children, nats_server.pid)
        results.cpu = {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after}

        # 3. Racksmith on the sushy sample, nothing queued.
        ids = [by_address[a] for a in sample if a in by_address]
        _progress(f"Racksmith: refresh of the {len(ids)} sushy-sample servers…")
        started = time.perf_counter()
        results.refresh_s = await refresh_sample(client, ids, args.timeout)
        _progress(f" {time.perf_counter() - started:.1f} s\n")
        results.check(
            "refresh: every sample server re-collected",
            len(results.refresh_s) == len(ids),
            f"{len(results.refresh_s)}/{len(ids)}",
        )
        results.max_sessions = max(lab.bmc(e.address).max_sessions for e in lab.manifest)
        results.check(
            "lab: session limit never exceeded",
            results.max_sessions <= args.session_limit,
            f"max {results.max_sessions}",
        )
        if not all(ok for _, ok, _ in results.checks):
            keep[0] = True
        report(results, args)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--sushy-walk"]:  # the baseline's child process
        return sushy_main(argv[1:])
    args = parse_args(argv)
    return run_benchmark(run(args))


if __name__ == "__main__":
    sys.exit(main())
