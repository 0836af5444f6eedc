"""Benchmark: power-cycle a fleet of lab servers with one bulk request (a long-jobs target).

One BMC lab (``--servers`` BMCs, default 200, four vendor flavours round-robin, the lab's
``realistic`` latency — lognormal, median 200 ms, p99 2 s — and power transitions of
``--power-delay`` seconds each way); Racksmith as separate processes (``racksmith api``, one
``racksmith worker`` each of ``scanner``, ``registrar`` and ``jobs``) on an embedded nats-server
and a SQLite file (or PostgreSQL with ``--database-url``). The lab is discovered and registered
through the API, its counters zeroed; then one ``POST /api/server/power/`` with every server and
``"action": "power_cycle"`` starts the jobs, and the script polls ``/api/job/`` until none is
active.

Figures: wall time from the request to the last job's end, against the ideal — one power cycle
(off and on: two transitions, twice ``--power-delay``), what one server alone would take with a
client that does nothing but wait for it; each job's own time (created → finished) p50/p99;
BMC calls per server from the lab's counters: POSTs of ``ComputerSystem.Reset`` (exactly the
planned resets: one ``PowerCycle``, or ``ForceOff`` and ``On`` where the BMC has no
``PowerCycle``), logins (the jobs worker keeps one session per BMC across a job's steps), and
GETs. Correctness is checked, not assumed: every job completed, every BMC reads ``On``, applied
resets equal planned ones.

    python bench/power.py                              # 200 servers, SQLite
    python bench/power.py --servers 50 --power-delay 1 # quicker
    python bench/power.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/

A benchmark that prints figures and ratios, not a test. All traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from typing import Any

import httpx
from api_list import percentile
from harness import (
    Child,
    cpu_seconds,
    embedded_nats,
    machine_description,
    migrate_and_create_admin,
    platform_env,
    prepare_database,
    racksmith,
    raise_fd_limit,
    run_benchmark,
    start_worker,
    work_dir,
)

from bmclab import Lab, LabConfig
from shared.platform.natsserver import free_port

ADMIN = "bench-admin"
# The jobs worker under measurement; scanner and registrar put the lab's servers in place, and
# the inventory worker publishes the server events others stage (a job's power_changed), as in
# any deployment — without it they would stay in the outbox and every relay wake the others.
WORKERS = ("scanner", "registrar", "inventory", "jobs")
# What a power_cycle asks of each flavour (iLO and AMI have no PowerCycle).
PLANNED = {
    "dell": ["PowerCycle"],
    "openbmc": ["PowerCycle"],
    "hpe": ["ForceOff", "On"],
    "supermicro": ["ForceOff", "On"],
}


async def register(client: httpx.AsyncClient, lab: Lab, limit_s: float) -> None:
    """The lab's BMCs discovered and registered through the API, as the guide does."""
    entry = lab.manifest[0]
    profile = (
        await client.post(
            "/api/node_discovery/auth_profile/",
            json={"node_classification": "bench lab", "bmc": "redfish"},
        )
    ).json()["id"]
    credential = {"username": entry.username, "password": entry.password}
    await client.post(f"/api/node_discovery/auth_profile/{profile}/credentials/", json=credential)
    scan_range = {
        "name": "bench power",
        "ip_from": entry.address,
        "ip_to": lab.manifest[-1].address,
        "ports": [entry.port],
    }
    range_id = (await client.post("/api/node_discovery/scan_range/", json=scan_range)).json()["id"]
    await client.post("/api/node_discovery/run_scan/", json={"scan_ranges": [range_id]})
    async with asyncio.timeout(limit_s):
        await _until(client, f"/api/node_discovery/scan_range/{range_id}/", "status", "scanning")
        nodes = (await client.get(f"/api/node/?scan_range={range_id}")).json()["results"]
        body = {"nodes": [n["id"] for n in nodes], "auth_profile": profile}
        await client.post("/api/node/register/", json=body, params={"wait": 0})
        await _until(client, "/api/node/?status=registering&page_size=1", "count", 0, done=True)
        # The first inventories, queued by the registrations, are done before the jobs start.
        await _until(
            client, "/api/server/?inventory_status=pending&page_size=1", "count", 0, done=True
        )


async def _until(
    client: httpx.AsyncClient, path: str, key: str, value: object, *, done: bool = False
) -> None:
    """Poll ``path`` while its ``key`` is ``value`` (with ``done``: until it is)."""
    while True:
        if ((await client.get(path)).json()[key] == value) == done:
            return
        await asyncio.sleep(0.5)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def drive(client: httpx.AsyncClient, args: argparse.Namespace) -> dict[str, Any]:
    servers = (await client.get("/api/server/?page_size=1000")).json()["results"]
    started = time.perf_counter()
    accepted = await client.post(
        "/api/server/power/", json={"servers": [s["id"] for s in servers], "action": "power_cycle"}
    )
    accepted.raise_for_status()
    queued = time.perf_counter() - started
    ids = {job["id"] for job in accepted.json()["jobs"]}
    async with asyncio.timeout(args.timeout):
        while True:
            jobs = (await client.get("/api/job/?kind=power&page_size=1000")).json()["results"]
            mine = [j for j in jobs if j["id"] in ids]
            if all(j["state"] in ("completed", "failed", "cancelled") for j in mine):
                break
            await asyncio.sleep(0.5)
    # The last job's own end, not the poll that noticed it.
    first = min(_time(j["created_at"]) for j in mine)
    last = max(_time(j["finished_at"]) for j in mine)
    return {
        "jobs": mine,
        "queued_s": queued,
        "wall_s": (last - first).total_seconds(),
        "job_s": [(_time(j["finished_at"]) - _time(j["created_at"])).total_seconds() for j in mine],
    }


def report(lab: Lab, outcome: dict[str, Any], args: argparse.Namespace) -> bool:
    jobs = outcome["jobs"]
    ideal = 2 * args.power_delay
    wall = outcome["wall_s"]
    per_job = outcome["job_s"]
    counters = {e.address: lab.counters(e.address) for e in lab.manifest}
    flavour = {e.address: e.flavour for e in lab.manifest}
    posts = sum(sum(c["reset_types"].values()) for c in counters.values())
    planned = sum(len(PLANNED[flavour[a]]) for a in counters)
    logins = sum(c["total_logins"] for c in counters.values())
    gets = sum(c["requests_served"] for c in counters.values()) - posts - logins
    checks = [
        (
            "every job completed",
            all(j["state"] == "completed" for j in jobs) and len(jobs) == args.servers,
        ),
        (
            "applied resets = planned resets",
            all(
                Counter(c["resets_applied"]) == Counter(PLANNED[flavour[a]])
                for a, c in counters.items()
            ),
        ),
        (
            "every BMC reads On",  # its first system, the one registration made a server of
            all(
                lab.bmc(a).store.body(
                    lab.bmc(a).store.body("/redfish/v1/Systems")["Members"][0]["@odata.id"]
                )["PowerState"]
                == "On"
                for a in counters
            ),
        ),
    ]
    n = args.servers
    print()
    delay = args.power_delay
    print(f"power_cycle of {n} servers (one bulk request; lab power transitions {delay:g} s)")
    print(f"  request accepted (all jobs created, ticks queued) {outcome['queued_s']:.2f} s")
    print(f"  wall time, request → last job completed           {wall:.1f} s")
    print(f"  ideal (one power cycle: two transitions)           {ideal:.1f} s")
    print(f"  ratio wall / ideal                                 {wall / ideal:.2f}")
    print(
        f"  per job (created → finished) p50 / p99             "
        f"{percentile(per_job, 50):.1f} s / {percentile(per_job, 99):.1f} s"
    )
    print(f"  Reset POSTs per server (planned {planned / n:.2f})         {posts / n:.2f}")
    print(f"  logins per server                                  {logins / n:.2f}")
    print(f"  GETs per server                                    {gets / n:.1f}")
    for name, seconds in outcome["cpu"].items():
        print(f"  CPU {name:<46} {seconds:.1f} s ({1000 * seconds / n:.0f} ms per job)")
    print()
    for name, ok in checks:
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return all(ok for _, ok in checks)


async def run(args: argparse.Namespace) -> int:
    raise_fd_limit(8 * args.servers + 1024)
    async with AsyncExitStack() as stack:
        tmp, keep = work_dir(stack, "racksmith-bench-power-", args.keep_logs)
        config = LabConfig(
            count=args.servers,
            network=args.network,
            latency=args.latency,
            power_delay=args.power_delay,
            seed=args.seed,
        )
        lab = await stack.enter_async_context(Lab(config))
        database_url, database = await prepare_database(args.database_url, args.pg_database, tmp)
        for key, value in machine_description(database):
            print(f"{key:<13} {value}")
        nats_server = await embedded_nats(stack, tmp)
        env = platform_env(
            tmp,
            database_url,
            nats_server.client_url(),
            RACKSMITH_JOB_POLL_INTERVAL_S=str(args.poll_interval),
            RACKSMITH_SCAN_ALLOWED_NETWORKS=args.network,
            RACKSMITH_INVENTORY_INTERVAL_S="0",
        )
        password = await migrate_and_create_admin(env, tmp, ADMIN)
        api_port = free_port()
        api = Child("api", racksmith("api", "--port", str(api_port)), env, tmp / "api.log")
        stack.push_async_callback(api.stop)
        await api.start()
        await api.wait_ready(f"http://127.0.0.1:{api_port}/readyz")
        workers = {kind: await start_worker(stack, kind, env, tmp) for kind in WORKERS}
        worker = workers["jobs"]
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=120)
        )
        token = await client.post("/api/token/", json={"username": ADMIN, "password": password})
        client.headers["Authorization"] = f"Bearer {token.json()['access']}"
        await register(client, lab, args.timeout)
        for entry in lab.manifest:  # count the jobs' calls only, not the registration's
            bmc = lab.bmc(entry.address)
            bmc.counters.clear()
            bmc.requests_served = bmc.total_logins = 0
        pids = {"jobs worker": worker.pid, "api": api.pid, "nats-server": nats_server.pid}
        pids["lab (this process)"] = os.getpid()
        before = {name: cpu_seconds(pid or 0) for name, pid in pids.items()}
        outcome = await drive(client, args)
        outcome["cpu"] = {name: cpu_seconds(pid or 0) - before[name] for name, pid in pids.items()}
        ok = report(lab, outcome, args)
        if not ok:
            keep[0] = True
    return 0 if ok else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--servers", type=int, default=200, help="lab BMCs, one server each")
    parser.add_argument("--network", default="127.0.120.0/24", help="lab network (in 127/8)")
    parser.add_argument("--latency", default="realistic", help="lab latency spec (docs/bmclab.md)")
    parser.add_argument("--power-delay", type=float, default=2.0, help="one transition, seconds")
    parser.add_argument(
        "--poll-interval", type=float, default=2.0, help="RACKSMITH_JOB_POLL_INTERVAL_S"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default="sqlite", help="'sqlite' or a PostgreSQL URL")
    parser.add_argument("--pg-database", default="racksmith_bench_power")
    parser.add_argument("--timeout", type=float, default=600, help="give up after S s")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with logs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    return run_benchmark(run(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
