"""Event latency: from a state change's commit to its receipt by a NATS subscriber, an SSE client
and a webhook receiver, over a burst of changes; raw nats-py publish → subscribe beside it.

    python bench/events.py                          # 10,000 changes, SQLite
    python bench/events.py --changes 2000           # quicker
    python bench/events.py --database-url postgresql+asyncpg://postgres@127.0.0.1:5432/

The changes are real API calls (`PATCH /api/pool/{id}/`, round-robin over `--pools` pools, from
`--concurrency` clients), so each one is a committed transaction whose event goes through the
outbox, the relay and JetStream. An event's `time` is its commit time, so a receiver's latency is
its clock at receipt minus `time` (one host, one clock). The receivers run in a separate process
(this script with `--receive`) so the load generator does not delay them.

Baseline, in the same run and on the same nats-server: raw nats-py sending the same number of
small messages, one in flight at a time, (a) core NATS publish → subscribe, (b) JetStream publish
with PubAck → subscribe, each timestamped by the publisher. Not a test: it prints figures and
ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import nats
from aiohttp import web
from api_list import percentile
from harness import (
    Child,
    machine_description,
    migrate_and_create_admin,
    platform_env,
    prepare_database,
    racksmith,
    run_benchmark,
    start_children,
    work_dir,
)

from shared.platform.natsserver import EmbeddedNatsServer, free_port

ADMIN = "bench-admin"
EVENT_TYPE = "io.racksmith.pool.updated"
CHANNELS = ("nats", "sse", "webhook")


# --- the receivers (a child process) --------------------------------------------------------------


@dataclass
class ReceiverConfig:
    nats_url: str
    api_url: str
    token: str
    webhook_port: int
    expected: int
    ready_file: str
    out_file: str
    timeout_s: float


def _write(path: str, text: str) -> None:
    Path(path).write_text(text)


def _latency_ms(body: bytes | str, received: float) -> tuple[str, float]:
    event = json.loads(body)
    committed = datetime.fromisoformat(event["time"].replace("Z", "+00:00")).timestamp()
    return event["id"], (received - committed) * 1000


async def receive(config: ReceiverConfig) -> None:
    """Listen on all three channels; write the latencies when every one saw ``expected``."""
    latencies: dict[str, dict[str, float]] = {name: {} for name in CHANNELS}
    done = asyncio.Event()

    def record(channel: str, body: bytes | str) -> None:
        received = time.time()
        event_id, latency = _latency_ms(body, received)
        latencies[channel].setdefault(event_id, latency)
        if all(len(v) >= config.expected for v in latencies.values()):
            done.set()

    nc = await nats.connect(config.nats_url)

    async def on_nats(message: Any) -> None:
        record("nats", message.data)

    await nc.subscribe("racksmith.evt.pool.*.updated", cb=on_nats)

    async def on_webhook(request: web.Request) -> web.Response:
        record("webhook", await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", on_webhook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", config.webhook_port).start()

    sse_connected = asyncio.Event()

    async def read_sse() -> None:
        headers = {"Authorization": f"Bearer {config.token}", "Accept": "text/event-stream"}
        timeout = httpx.Timeout(10, read=None)
        async with (
            httpx.AsyncClient(base_url=config.api_url, timeout=timeout) as client,
            client.stream(
                "GET", "/api/events/stream/", params={"type": EVENT_TYPE}, headers=headers
            ) as response,
        ):
            response.raise_for_status()
            sse_connected.set()
            data: list[str] = []
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    data.append(line[5:].lstrip())
                elif not line and data:
                    record("sse", "\n".join(data))
                    data = []

    sse = asyncio.create_task(read_sse())
    await asyncio.wait_for(sse_connected.wait(), 30)
    _write(config.ready_file, "ready")
    # On timeout, report what arrived; the parent prints the shortfall.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(done.wait(), config.timeout_s)
    _write(config.out_file, json.dumps({k: list(v.values()) for k, v in latencies.items()}))
    sse.cancel()
    with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
        await sse
    await runner.cleanup()
    await nc.close()


# --- the baseline ---------------------------------------------------------------------------------


async def raw_nats(url: str, count: int) -> dict[str, list[float]]:
    """publish → subscribe latency of raw nats-py, one message in flight at a time: core NATS,
    and JetStream (publish awaits the PubAck, as Racksmith's relay does)."""
    results: dict[str, list[float]] = {}
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        await js.add_stream(name="BENCH_RAW", subjects=["bench.raw.js.>"])
        for name, subject in (("core", "bench.raw.core.x"), ("jetstream", "bench.raw.js.x")):
            arrivals: asyncio.Queue[float] = asyncio.Queue()

            async def on_message(message: Any, into: asyncio.Queue[float] = arrivals) -> None:
                into.put_nowait((time.time() - float(message.data)) * 1000)

            sub = await nc.subscribe(subject, cb=on_message)
            await nc.flush()
            latencies = []
            for _ in range(count):
                payload = repr(time.time()).encode()
                if name == "core":
                    await nc.publish(subject, payload)
                    await nc.flush()
                else:
                    await js.publish(subject, payload)
                latencies.append(await asyncio.wait_for(arrivals.get(), 10))
            await sub.unsubscribe()
            results[name] = latencies
        # No delete_stream: the server is this run's own, and its default user may not delete.
    finally:
        await nc.close()
    return results


# --- the run --------------------------------------------------------------------------------------


def _row(name: str, values: Sequence[float]) -> str:
    if not values:
        return f"{name:<34} (nothing received)"
    return (
        f"{name:<34} n={len(values):>6}  p50 {percentile(values, 50):8.2f} ms  "
        f"p99 {percentile(values, 99):8.2f} ms  max {max(values):8.2f} ms  "
        f"mean {statistics.fmean(values):8.2f} ms"
    )


async def _api_token(client: httpx.AsyncClient, password: str) -> str:
    response = await client.post("/api/token/", json={"username": ADMIN, "password": password})
    response.raise_for_status()
    token: str = response.json()["access"]
    return token


async def _make_changes(
    client: httpx.AsyncClient, pools: list[int], changes: int, concurrency: int
) -> float:
    """PATCH pools round-robin from ``concurrency`` clients; returns changes per second."""
    counter = iter(range(changes))

    async def one_client() -> None:
        for n in counter:
            pool = pools[n % len(pools)]
            response = await client.patch(f"/api/pool/{pool}/", json={"description": f"change {n}"})
            response.raise_for_status()

    started = time.perf_counter()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return changes / (time.perf_counter() - started)


async def run(args: argparse.Namespace) -> int:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    async with contextlib.AsyncExitStack() as stack:
        tmp, keep = work_dir(stack, "racksmith-bench-events-", args.keep_logs)
        database_url, database = await prepare_database(args.database_url, args.pg_database, tmp)
        server = EmbeddedNatsServer(tmp / "nats")
        await server.start()
        stack.push_async_callback(server.stop)

        print("raw nats-py baseline…", flush=True)
        baseline = await raw_nats(server.client_url(), args.changes)

        api_port = free_port()
        env = platform_env(
            tmp,
            database_url,
            server.client_url(),
            RACKSMITH_PORT=str(api_port),
            RACKSMITH_WEBHOOK_ALLOWED_NETWORKS="127.0.0.1/32",
        )
        password = await migrate_and_create_admin(env, tmp, ADMIN)
        api = Child("api", racksmith("api"), env, tmp / "api.log")
        hooks = Child(
            "webhooks",
            racksmith("worker", "webhooks", "--health-port", str(free_port())),
            env,
            tmp / "webhooks.log",
        )
        await start_children(stack, api, hooks)
        api_url = f"http://127.0.0.1:{api_port}"
        await api.wait_ready(f"{api_url}/readyz")

        client = await stack.enter_async_context(
            httpx.AsyncClient(base_url=api_url, timeout=httpx.Timeout(60))
        )
        token = await _api_token(client, password)
        client.headers["Authorization"] = f"Bearer {token}"
        pools = []
        for n in range(args.pools):
            created = await client.post("/api/pool/", json={"name": f"bench pool {n}"})
            created.raise_for_status()
            pools.append(created.json()["id"])

        webhook_port = free_port()
        config = ReceiverConfig(
            nats_url=server.client_url(),
            api_url=api_url,
            token=token,
            webhook_port=webhook_port,
            expected=args.changes,
            ready_file=str(tmp / "receiver.ready"),
            out_file=str(tmp / "receiver.json"),
            timeout_s=args.timeout,
        )
        receiver = Child(
            "receiver",
            [sys.executable, __file__, "--receive", json.dumps(config.__dict__)],
            env,
            tmp / "receiver.log",
        )
        stack.push_async_callback(receiver.stop)
        await receiver.start()
        while not await asyncio.to_thread(Path(config.ready_file).exists):
            if receiver.process is None or receiver.process.returncode is not None:
                raise SystemExit(f"receiver failed:\n{receiver.log_tail()}")
            await asyncio.sleep(0.1)
        hook = await client.post(
            "/api/webhooks/",
            json={
                "name": "bench",
                "url": f"http://127.0.0.1:{webhook_port}/hook",
                "event_types": [EVENT_TYPE],
                "content_mode": "structured",
            },
        )
        hook.raise_for_status()

        print(f"{args.changes} changes from {args.concurrency} clients over {args.pools} pools…")
        rate = await _make_changes(client, pools, args.changes, args.concurrency)
        assert receiver.process is not None
        await asyncio.wait_for(receiver.process.wait(), args.timeout + 30)
        received: dict[str, list[float]] = json.loads(
            await asyncio.to_thread(Path(config.out_file).read_text)
        )

        print()
        for key, value in machine_description(database):
            print(f"{key:<13} {value}")
        print(f"{'changes':<13} {args.changes} at {rate:,.0f}/s ({args.concurrency} clients)")
        print()
        print(_row("raw nats-py core pub → sub", baseline["core"]))
        print(_row("raw nats-py JetStream pub → sub", baseline["jetstream"]))
        print(_row("commit → NATS subscriber", received["nats"]))
        print(_row("commit → SSE client", received["sse"]))
        print(_row("commit → webhook receiver", received["webhook"]))
        print()
        raw = baseline["jetstream"]
        ok = True
        for channel in CHANNELS:
            values = received[channel]
            if len(values) < args.changes:
                ok = False
                print(f"!! {channel}: {len(values)} of {args.changes} events arrived")
            if values:
                p50 = percentile(values, 50) / percentile(raw, 50)
                p99 = percentile(values, 99) / percentile(raw, 99)
                print(f"{channel:<8} / raw JetStream: p50 {p50:.1f}x  p99 {p99:.1f}x")
        nats_p99 = percentile(received["nats"], 99) if received["nats"] else float("inf")
        print(f"target: commit → NATS subscriber p99 < 50 ms: {'yes' if nats_p99 < 50 else 'NO'}")
        keep[0] = keep[0] or not ok
        return 0 if ok else 1


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--changes", type=int, default=10_000, help="state changes in the burst")
    parser.add_argument("--pools", type=int, default=100, help="pools the changes go round")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent API clients")
    parser.add_argument("--database-url", default="sqlite", help="sqlite, or a PostgreSQL URL")
    parser.add_argument("--pg-database", default="racksmith_bench")
    parser.add_argument("--timeout", type=float, default=300, help="give up waiting after S s")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with logs")
    parser.add_argument("--receive", help=argparse.SUPPRESS)  # internal: the receiver process
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.receive:
        asyncio.run(receive(ReceiverConfig(**json.loads(args.receive))))
        return 0
    return run_benchmark(run(args))


if __name__ == "__main__":
    raise SystemExit(main())
