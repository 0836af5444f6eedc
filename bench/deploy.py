"""Benchmark: deploy an OS image to a fleet of lab servers with one request (virtual media).

One BMC lab (``--servers`` BMCs, four vendor flavours round-robin, ``--latency``, power
transitions of ``--power-delay`` s, a fake installer that runs ``--install-time`` s once it read
its image); Racksmith as separate processes (``racksmith api``, ``racksmith artifacts`` — the
serving process measured —, one ``racksmith worker`` each of ``scanner``, ``registrar``,
``inventory`` and ``jobs``) on an embedded nats-server and a SQLite file. The lab is discovered
and registered through the API; a ``--image-mib`` image of random bytes is uploaded; one
``POST /api/deployment/`` with every server starts the jobs; the script polls ``/api/job/`` until
none is active. Every lab BMC reads the whole image from the artifact server in 1 MiB Range
requests, as a BMC behind a virtual CD does.

Figures:

- wall time, request → last job completed, against the ideal: what one server alone would take
  with nothing in its way — four power transitions (the power-cycle into the installer, and
  off/on when finalising), one install time, and the transfer of every server's image at the
  machine's loopback rate (all images cross one loopback);
- bytes served per second by the artifact server while bytes moved (the lab's byte counters,
  sampled every 0.1 s; the intervals in which they grew), against the machine's loopback copy
  rate measured in the same run: the same number of clients reading the same file in the same
  Range pieces from a plain aiohttp static-file server (kernel sendfile, nothing else) —
  ``bench/artifacts.py``'s baseline;
- the artifact server's resident memory, idle and peak (the kernel's high-water mark).

Checked, not assumed: every job completed, every installer called home once, every BMC read at
least the whole image and runs the deployed OS, and every slot is empty again.

    python bench/deploy.py                                # 20 servers, 16 MiB image: quick
    python bench/deploy.py --servers 100 --image-mib 64   # the full size

A benchmark that prints figures and ratios, not a test. All traffic stays on 127.0.0.0/8.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from api_list import percentile
from artifacts import MIB, make_file, peak_mib, read_all, reset_peak, rss_mib, serve_static
from harness import (
    Child,
    cpu_seconds,
    embedded_nats,
    machine_description,
    migrate_and_create_admin,
    platform_env,
    racksmith,
    raise_fd_limit,
    run_benchmark,
    start_children,
    start_worker,
    work_dir,
)
from power import register

from bmclab import Lab, LabConfig
from shared.platform.natsserver import free_port

ADMIN = "bench-admin"
WORKERS = ("scanner", "registrar", "inventory", "jobs")
RANGE = MIB  # what the lab's BMCs ask for per request (bmclab Behaviour.media_chunk)


def _time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _media_bytes(lab: Lab) -> int:
    return sum(bmc.counters.media_bytes for bmc in lab.bmcs)


async def _sample_transfer(lab: Lab, samples: list[tuple[float, int]]) -> None:
    """(time, bytes the BMCs read so far), every 0.1 s, until cancelled."""
    while True:
        samples.append((time.perf_counter(), _media_bytes(lab)))
        await asyncio.sleep(0.1)


def _transfer_rate(samples: list[tuple[float, int]]) -> tuple[float, float]:
    """Bytes/s while bytes were moving (the sample intervals in which the BMCs' counters grew:
    the BMCs start reading at different moments, and wait for power and boots in between), and
    how long that was."""
    moved = busy = 0.0
    for (t1, b1), (t2, b2) in itertools.pairwise(samples):
        if b2 > b1:
            moved += b2 - b1
            busy += t2 - t1
    return moved / max(busy, 1e-3), busy


async def drive(client: httpx.AsyncClient, lab: Lab, os_id: int, limit_s: float) -> dict[str, Any]:
    servers = (await client.get("/api/server/?page_size=1000")).json()["results"]
    samples: list[tuple[float, int]] = []
    sampler = asyncio.ensure_future(_sample_transfer(lab, samples))
    started = time.perf_counter()
    accepted = await client.post(
        "/api/deployment/", json={"servers": [s["id"] for s in servers], "os": os_id}
    )
    accepted.raise_for_status()
    queued = time.perf_counter() - started
    ids = {job["id"] for job in accepted.json()["jobs"]}
    try:
        async with asyncio.timeout(limit_s):
            while True:
                jobs = (await client.get("/api/job/?kind=deployment&page_size=1000")).json()
                mine = [j for j in jobs["results"] if j["id"] in ids]
                if all(j["state"] in ("completed", "failed", "cancelled") for j in mine):
                    break
                await asyncio.sleep(0.5)
    finally:
        sampler.cancel()
    first = min(_time(j["created_at"]) for j in mine)
    last = max(_time(j["finished_at"]) for j in mine)
    rate, span = _transfer_rate(samples)
    return {
        "jobs": mine,
        "queued_s": queued,
        "wall_s": (last - first).total_seconds(),
        "job_s": [(_time(j["finished_at"]) - _time(j["created_at"])).total_seconds() for j in mine],
        "served_rate": rate,
        "transfer_s": span,
    }


def report(lab: Lab, outcome: dict[str, Any], args: argparse.Namespace) -> bool:
    n, size = args.servers, args.image_mib * MIB
    jobs = outcome["jobs"]
    counters = [lab.counters(e.address) for e in lab.manifest]
    slots_empty = all(
        not lab.bmc(e.address).store.body(path).get("Inserted")
        for e in lab.manifest
        for path in lab.bmc(e.address).store
        if "/VirtualMedia/" in path and "Inserted" in lab.bmc(e.address).store.body(path)
    )
    checks = [
        ("every job completed", len(jobs) == n and all(j["state"] == "completed" for j in jobs)),
        ("every installer called home once", all(c["calls_home"] == 1 for c in counters)),
        ("every BMC read the whole image", all(c["media_bytes"] >= size for c in counters)),
        ("every server runs the deployed OS", all(c["deployed_os"] for c in counters)),
        ("every virtual media slot is empty again", slots_empty),
    ]
    loopback = outcome["loopback_rate"]
    transfer_ideal = n * size / loopback
    ideal = 4 * args.power_delay + args.install_time + transfer_ideal
    wall = outcome["wall_s"]
    per_job = outcome["job_s"]
    served = outcome["served_rate"]
    print()
    print(
        f"deployment of a {args.image_mib} MiB image to {n} servers (one request; lab power "
        f"transitions {args.power_delay:g} s, installer {args.install_time:g} s)"
    )
    print(f"  request accepted (all jobs created, ticks queued)  {outcome['queued_s']:.2f} s")
    print(f"  wall time, request → last job completed            {wall:.1f} s")
    print(
        f"  ideal: 4 transitions + install + {n} images at the loopback rate "
        f"{ideal:.1f} s ({4 * args.power_delay:g} + {args.install_time:g} + {transfer_ideal:.1f})"
    )
    print(f"  ratio wall / ideal                                  {wall / ideal:.2f}")
    print(
        f"  per job (created → finished) p50 / p99              "
        f"{percentile(per_job, 50):.1f} s / {percentile(per_job, 99):.1f} s"
    )
    print(
        f"  bytes served/s while bytes moved ({outcome['transfer_s']:.1f} s)          "
        f"{served / MIB:.0f} MiB/s"
    )
    print(f"  loopback copy rate ({n} clients, static server)       {loopback / MIB:.0f} MiB/s")
    print(f"  ratio served / loopback                             {served / loopback:.2f}")
    print(
        f"  artifact server memory idle / peak                  "
        f"{outcome['serving_idle']:.0f} MiB / {outcome['serving_peak']:.0f} MiB"
    )
    for name, seconds in outcome["cpu"].items():
        print(f"  CPU {name:<47} {seconds:.1f} s")
    print()
    for name, ok in checks:
        print(f"  [{'ok' if ok else 'FAILED'}] {name}")
    return all(ok for _, ok in checks)


async def run(args: argparse.Namespace) -> int:
    raise_fd_limit(8 * args.servers + 1024)
    size = args.image_mib * MIB
    async with AsyncExitStack() as stack:
        tmp, keep = work_dir(stack, "racksmith-bench-deploy-", args.keep_logs)
        config = LabConfig(
            count=args.servers,
            network=args.network,
            latency=args.latency,
            power_delay=args.power_delay,
            power_on_holdoff=2 * args.power_delay,
            install_time=args.install_time,
            seed=args.seed,
        )
        lab = await stack.enter_async_context(Lab(config))
        database_url = f"sqlite+aiosqlite:///{tmp / 'racksmith.db'}"
        for key, value in machine_description("sqlite"):
            print(f"{key:<13} {value}")
        source = tmp / "image.iso"
        await asyncio.to_thread(make_file, source, size)
        nats_server = await embedded_nats(stack, tmp)
        api_port, artifact_port, static_port = free_port(), free_port(), free_port()
        env = platform_env(
            tmp,
            database_url,
            nats_server.client_url(),
            RACKSMITH_PORT=str(api_port),
            RACKSMITH_ARTIFACT_PORT=str(artifact_port),
            RACKSMITH_CALL_HOME_URL=f"http://127.0.0.1:{api_port}",
            RACKSMITH_JOB_POLL_INTERVAL_S=str(args.poll_interval),
            RACKSMITH_SCAN_ALLOWED_NETWORKS=args.network,
            RACKSMITH_INVENTORY_INTERVAL_S="0",
        )
        password = await migrate_and_create_admin(env, tmp, ADMIN)
        api = Child("api", racksmith("api"), env, tmp / "api.log")
        server = Child("artifacts", racksmith("artifacts"), env, tmp / "artifacts.log")
        static = Child(
            "static",
            [sys.executable, __file__, "--static-server", str(static_port), str(source)],
            env,
            tmp / "static.log",
        )
        await start_children(stack, api, server, static)
        await api.wait_ready(f"http://127.0.0.1:{api_port}/readyz")
        await server.wait_ready(f"http://127.0.0.1:{artifact_port}/readyz")
        await static.wait_ready(f"http://127.0.0.1:{static_port}/file")
        workers = {kind: await start_worker(stack, kind, env, tmp) for kind in WORKERS}
        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{api_port}", timeout=600)
        )
        token = await client.post("/api/token/", json={"username": ADMIN, "password": password})
        client.headers["Authorization"] = f"Bearer {token.json()['access']}"
        await register(client, lab, args.timeout)
        with source.open("rb") as body:
            uploaded = await client.post(
                "/api/os/",
                files={"file": ("bench-installer.iso", body)},
                data={"name": "bench image", "arch": "x86_64", "os_family": "linux"},
            )
        uploaded.raise_for_status()
        print(f"loopback baseline: {args.servers} clients reading {args.image_mib} MiB…")
        loopback, _ = await read_all(
            f"http://127.0.0.1:{static_port}/file", args.servers, size, RANGE
        )
        await static.stop()
        for bmc in lab.bmcs:  # count the deployment's work only
            bmc.counters.clear()
        assert server.pid is not None
        serving_idle = rss_mib(server.pid)
        reset_peak(server.pid)
        pids = {"jobs worker": workers["jobs"].pid, "artifact server": server.pid}
        pids |= {"api": api.pid, "lab and its installers (this process)": os.getpid()}
        before = {name: cpu_seconds(pid or 0) for name, pid in pids.items() if pid}
        print(f"deploying to {args.servers} servers…", flush=True)
        outcome = await drive(client, lab, uploaded.json()["id"], args.timeout)
        outcome["cpu"] = {
            name: cpu_seconds(pid) - before[name] for name, pid in pids.items() if pid
        }
        outcome.update(
            loopback_rate=loopback, serving_idle=serving_idle, serving_peak=peak_mib(server.pid)
        )
        ok = report(lab, outcome, args)
        if not ok:
            keep[0] = True
    return 0 if ok else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--servers", type=int, default=20, help="lab BMCs, one server each")
    parser.add_argument("--image-mib", type=int, default=16, help="size of the image")
    parser.add_argument("--network", default="127.0.121.0/24", help="lab network (in 127/8)")
    parser.add_argument("--latency", default="realistic", help="lab latency spec (docs/bmclab.md)")
    parser.add_argument("--power-delay", type=float, default=2.0, help="one transition, seconds")
    parser.add_argument("--install-time", type=float, default=10.0, help="the installer's run")
    parser.add_argument(
        "--poll-interval", type=float, default=2.0, help="RACKSMITH_JOB_POLL_INTERVAL_S"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--timeout", type=float, default=900, help="give up after S s")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with logs")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--static-server":
        serve_static(int(sys.argv[2]), str(Path(sys.argv[3])))
        return 0
    return run_benchmark(run(parse_args(argv)))


if __name__ == "__main__":
    raise SystemExit(main())
