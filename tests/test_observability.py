"""Observability on the real processes (docs/observability.md): ``racksmith api`` and one
``racksmith worker`` per kind, on the test broker and database, run discovery, registration,
inventory, webhooks and a power job against the BMC lab, with tracing exported to a receiver in
this process.

- every process serves its metrics; every family the docs list has samples, every metric the
  dashboard and the alert rules query exists, and the run shows in the values;
- one trace spans the API request, the worker's handler and its BMC requests (and the events it
  published), and the handler's log lines carry its trace id.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiohttp import web

from bmclab import Lab, LabConfig
from shared.core.settings import Settings
from shared.messaging.streams import CONSUMERS
from shared.platform.natsserver import EmbeddedNatsServer, free_port
from shared.platform.runtime import Runtime
from tests.conftest import ADMIN_PASSWORD, ADMIN_USERNAME, own_nats_user, worker_env
from tests.lab_net import LAB_NET
from tests.local_http import serving
from tests.observability_helpers import (
    CLIENT,
    CONSUMER,
    PRODUCER,
    SERVER,
    Collector,
    Sample,
    Span,
    alert_rules,
    collecting,
    dashboard_expressions,
    documented_families,
    has_samples,
    metric_names,
    scrape,
    silent_address,
    total,
)

pytestmark = [pytest.mark.broker, pytest.mark.lab, pytest.mark.slow]

RACKSMITH = str(Path(sys.executable).with_name("racksmith"))
NETWORK = f"{LAB_NET}.172"
LAB_PASSWORD = "Lab-Observe-Pa55"
WORKERS = ("scanner", "registrar", "inventory", "jobs", "webhooks")
# Lab BMCs 1 to 6 are Redfish; 7 hangs after accepting, 8 fails TLS, 9 is a printer; 10 never
# answers a connect, 11 and 12 refuse.
HEALTHY = 6
FAULTS = "hang@6,tlsfail@7,nonredfish@8"
SILENT = f"{NETWORK}.10"
LAST = f"{NETWORK}.12"


@dataclass
class Process:
    name: str
    process: asyncio.subprocess.Process
    port: int
    log: Path

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log.read_text().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                continue
        return lines


@dataclass
class Platform:
    api: Process
    workers: dict[str, Process]
    collector: Collector
    lab: Lab
    client: httpx.AsyncClient

    @property
    def processes(self) -> list[Process]:
        return [self.api, *self.workers.values()]


def _environment(settings: Settings, collector: Collector, state: Path) -> dict[str, str]:
    assert settings.secret_key is not None
    return worker_env(settings) | {
        "RACKSMITH_STATE_DIR": str(state),
        "RACKSMITH_SECRET_KEY": settings.secret_key.get_secret_value(),
        "RACKSMITH_SCAN_CONNECT_TIMEOUT_S": "0.5",
        "RACKSMITH_SCAN_PROBE_TIMEOUT_S": "2",
        "RACKSMITH_SCAN_PROGRESS_INTERVAL_S": "0.3",
        "RACKSMITH_REDFISH_CONNECT_TIMEOUT_S": "2",
        "RACKSMITH_REDFISH_READ_TIMEOUT_S": "5",
        "RACKSMITH_BMC_UNREACHABLE_ATTEMPTS": "2",
        "RACKSMITH_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        "RACKSMITH_WEBHOOK_RETRY_BASE_S": "0.1",
        "RACKSMITH_WEBHOOK_RETRY_MAX_S": "0.3",
        "RACKSMITH_WEBHOOK_DISABLE_AFTER_FAILURES": "2",
        "RACKSMITH_WEBHOOK_DISABLE_AFTER_S": "0",
        "RACKSMITH_JOB_POLL_INTERVAL_S": "0.3",
        # Tracing by the standard variables only, exported to this test's receiver.
        "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "NO_PROXY": "127.0.0.1,localhost",
    }


async def _start(name: str, args: list[str], env: dict[str, str], port: int, log: Path) -> Process:
    process = await asyncio.create_subprocess_exec(
        RACKSMITH, *args, env=env, stdout=log.open("w"), stderr=asyncio.subprocess.STDOUT
    )
    return Process(name, process, port, log)


async def _ready(process: Process) -> None:
    """Wait until the process answers /readyz (a loaded machine starts slowly)."""
    async with httpx.AsyncClient(timeout=2) as client, asyncio.timeout(90):
        while True:
            assert process.process.returncode is None, process.log.read_text()[-2000:]
            try:
                response = await client.get(f"http://127.0.0.1:{process.port}/readyz")
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


async def _stop(process: Process) -> None:
    if process.process.returncode is None:
        process.process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(30):
                await process.process.wait()
        except TimeoutError:
            process.process.kill()
            await process.process.wait()


@pytest.fixture(scope="module")
async def receivers() -> AsyncIterator[tuple[str, str]]:
    """A webhook receiver that accepts, and the URL of one that refuses connections."""

    async def accept(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/hook", accept)
    async with serving(app) as base:
        yield f"{base}/hook", f"http://127.0.0.1:{free_port()}/hook"


@pytest.fixture(scope="module")
async def platform(
    settings: Settings,
    runtime: Runtime,
    nats_server: EmbeddedNatsServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Platform]:
    """The processes, on the suite's broker and database (``runtime`` migrated it and made the
    admin), each as its component's own NATS user, as deployed."""
    directory = tmp_path_factory.mktemp("observability")
    config = LabConfig(
        count=HEALTHY + 3,
        network=f"{NETWORK}.0/24",
        latency="0",
        password=LAB_PASSWORD,
        faults=FAULTS,
        seed=20,
    )
    async with collecting() as collector, Lab(config) as lab:
        env = _environment(settings, collector, directory / "state")
        processes: list[Process] = []
        try:
            api_port = free_port()
            processes.append(
                await _start(
                    "api",
                    ["api", "--host", "127.0.0.1", "--port", str(api_port)],
                    env | own_nats_user(nats_server, "api"),
                    api_port,
                    directory / "api.log",
                )
            )
            for kind in WORKERS:
                port = free_port()
                processes.append(
                    await _start(
                        kind,
                        ["worker", kind, "--health-port", str(port)],
                        env | own_nats_user(nats_server, kind),
                        port,
                        directory / f"{kind}.log",
                    )
                )
            for process in processes:
                await _ready(process)
            async with httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{api_port}", timeout=30
            ) as client:
                token = await client.post(
                    "/api/token/", json={"username": ADMIN_USERNAME, "password": ADMIN_PASSWORD}
                )
                assert token.status_code == 200, token.text
                client.headers["Authorization"] = f"Bearer {token.json()['access']}"
                yield Platform(
                    processes[0], {p.name: p for p in processes[1:]}, collector, lab, client
                )
        finally:
            for process in processes:
                await _stop(process)


async def _until(check: Callable[[], Any], what: str, timeout: float = 90) -> None:
    try:
        async with asyncio.timeout(timeout):
            while not await check():
                await asyncio.sleep(0.3)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@pytest.fixture(scope="module")
async def run(platform: Platform, receivers: tuple[str, str]) -> AsyncIterator[dict[str, Any]]:
    """Discovery, registration (busy, unreachable and refusing BMCs among them), inventory,
    webhook deliveries and a power job, driven through the API as an operator would."""
    client, lab = platform.client, platform.lab
    good, refused = receivers
    hooks = []
    for name, url in (("observed", good), ("unreachable", refused)):
        created = await client.post(
            "/api/webhooks/",
            json={
                "name": f"observability {name}",
                "url": url,
                "event_types": ["node.registered", "server.inventoried"],
            },
        )
        assert created.status_code == 201, created.text
        hooks.append(created.json()["id"])
    profile = (
        await client.post(
            "/api/node_discovery/auth_profile/",
            json={"node_classification": "observability", "bmc": "redfish"},
        )
    ).json()
    added = await client.post(
        f"/api/node_discovery/auth_profile/{profile['id']}/credentials/",
        json={"username": "root", "password": LAB_PASSWORD},
    )
    assert added.status_code == 201, added.text

    with silent_address(SILENT, lab.config.port):
        scan_range = (
            await client.post(
                "/api/node_discovery/scan_range/",
                json={
                    "name": "observability",
                    "ip_from": f"{NETWORK}.1",
                    "ip_to": LAST,
                    "ports": [lab.config.port],
                },
            )
        ).json()
        started = await client.post(
            "/api/node_discovery/run_scan/", json={"scan_ranges": [scan_range["id"]]}
        )
        assert started.status_code == 202, started.text

        async def scanned() -> bool:
            body = (await client.get(f"/api/node_discovery/scan_range/{scan_range['id']}/")).json()
            return bool(body["status"] != "scanning")

        await _until(scanned, "the scan")
    nodes = (await client.get(f"/api/node/?scan_range={scan_range['id']}")).json()["results"]
    assert len(nodes) == HEALTHY

    # Busy for a while (retried, then registered), resetting connections (unreachable: retried,
    # then error), refusing the credentials (error at once); the rest register at once.
    lab.bmc(1).set_fault("busy:3")
    lab.bmc(2).set_fault("reset")
    lab.bmc(3).set_fault("badcreds")
    registered = await client.post(
        "/api/node/register/",
        json={"nodes": [n["id"] for n in nodes], "auth_profile": profile["id"]},
        params={"wait": 0},
    )
    assert registered.status_code in (200, 202), registered.text

    async def settled() -> bool:
        body = (await client.get(f"/api/node/?scan_range={scan_range['id']}")).json()
        return all(n["status"] in ("registered", "error") for n in body["results"])

    await _until(settled, "the registrations")
    final = (await client.get(f"/api/node/?scan_range={scan_range['id']}")).json()["results"]
    by_ip = {n["ip"]: n for n in final}
    statuses = [by_ip[e.address]["status"] for e in lab.manifest[:HEALTHY]]
    assert statuses == ["registered", "registered", "error", "error", "registered", "registered"]

    async def collected() -> bool:
        servers = (await client.get("/api/server/", params={"page_size": 1000})).json()["results"]
        mine = [s for s in servers if s["node"] in {n["id"] for n in final}]
        return len(mine) >= 4 and all(s["inventory_status"] == "collected" for s in mine)

    await _until(collected, "the inventories")
    servers = (await client.get("/api/server/", params={"page_size": 1000})).json()["results"]
    server = next(s for s in servers if s["node"] in {n["id"] for n in final})
    # Answered when done: the jobs worker took it up, reset the BMC and read the power back.
    powered = await client.post(
        f"/api/server/{server['id']}/power/", json={"action": "off"}, params={"wait": 60}
    )
    assert powered.status_code == 200 and powered.json()["state"] == "completed", powered.text

    async def disabled() -> bool:
        hook = (await client.get(f"/api/webhooks/{hooks[1]}/")).json()
        return not hook["active"]

    await _until(disabled, "the failing webhook to be disabled")
    yield {"scan_range": scan_range, "nodes": final}
    for hook_id in hooks:
        await client.delete(f"/api/webhooks/{hook_id}/")


@pytest.fixture(scope="module")
async def scraped(platform: Platform, run: dict[str, Any]) -> dict[str, list[Sample]]:
    # The scrape-time gauges are read at most every few seconds: wait out the last reading.
    await asyncio.sleep(5.5)
    return {p.name: await scrape(p.metrics_url) for p in platform.processes}


def _union(scraped: dict[str, list[Sample]]) -> list[Sample]:
    return [s for samples in scraped.values() for s in samples]


async def test_every_documented_family_has_samples(scraped: dict[str, list[Sample]]) -> None:
    families = documented_families()
    assert len(families) >= 30, families
    samples = _union(scraped)
    missing = [f for f in families if not has_samples(samples, f)]
    assert not missing, missing
    # And the docs list every racksmith_* family a process exposes.
    exposed = {
        s.name.removesuffix("_bucket").removesuffix("_count").removesuffix("_sum")
        for s in samples
        if s.name.startswith("racksmith_")
    }
    undocumented = {name for name in exposed if name not in families}
    assert not undocumented, undocumented


async def test_dashboard_and_alerts_query_only_metrics_that_exist(
    scraped: dict[str, list[Sample]],
) -> None:
    names = {s.name for s in _union(scraped)}
    queries = dashboard_expressions() | {
        rule["alert"]: rule["expr"] for rule in alert_rules() if "alert" in rule
    }
    assert len(queries) >= 30
    for where, expression in queries.items():
        referenced = metric_names(expression)
        assert referenced, f"{where} queries no metric"
        assert referenced <= names, f"{where}: {sorted(referenced - names)} not exposed"


async def test_each_process_reports_its_own_work(
    scraped: dict[str, list[Sample]], run: dict[str, Any]
) -> None:
    scanner, registrar = scraped["scanner"], scraped["registrar"]
    inventory, webhooks, api = scraped["inventory"], scraped["webhooks"], scraped["api"]
    probes = "racksmith_scan_probes_total"
    assert total(scanner, probes, outcome="bmc") == HEALTHY
    assert total(scanner, probes, outcome="timeout_after_accept") == 1
    assert total(scanner, probes, outcome="tls_failed") == 1
    assert total(scanner, probes, outcome="not_redfish") == 1
    assert total(scanner, probes, outcome="silent") == 1
    assert total(scanner, probes, outcome="refused") == 2
    assert total(scanner, "racksmith_scan_runs_total", outcome="completed") == 1
    assert total(scanner, "racksmith_scan_chunk_duration_seconds_count") == 1

    operations = "racksmith_bmc_operations_total"
    assert total(registrar, operations, operation="registration", outcome="succeeded") == 4
    assert total(registrar, operations, operation="registration", reason="busy") >= 1
    assert total(registrar, operations, operation="registration", reason="unreachable") == 2
    assert total(registrar, operations, outcome="failed", reason="credentials_refused") == 1
    assert total(registrar, operations, outcome="failed", reason="unreachable") == 1
    assert total(registrar, "racksmith_bmc_busy_total") >= 1
    assert total(registrar, "racksmith_bmc_unreachable_total") >= 2
    assert total(registrar, "racksmith_command_redeliveries_total", consumer="registrar") >= 2
    # Sessions are logged out: none left open.
    assert total(registrar, "racksmith_bmc_sessions_open") == 0
    assert total(inventory, operations, operation="inventory", outcome="succeeded") >= 4
    assert total(inventory, "racksmith_bmc_operation_requests_sum", operation="inventory") > 20
    vendors = {s.labels["vendor"] for s in inventory if s.name == "racksmith_bmc_requests_total"}
    # The flavours of the BMCs that registered (the shared inventory consumer may also hand this
    # worker commands other tests queued without running an inventory worker).
    assert {"dell", "hpe"} <= vendors

    assert total(webhooks, "racksmith_webhook_deliveries_total", outcome="delivered") >= 1
    assert total(webhooks, "racksmith_webhook_attempts_total", status_class="no_answer") >= 2
    assert total(webhooks, "racksmith_webhook_disablings_total") == 1
    assert total(api, "racksmith_webhooks_disabled") >= 1

    jobs = scraped["jobs"]
    assert total(api, "racksmith_jobs_total", kind="power", state="pending") == 1
    # (The shared jobs consumer may also hand this worker ticks other tests left behind.)
    assert total(jobs, "racksmith_jobs_total", kind="power", state="running") >= 1
    assert total(jobs, "racksmith_jobs_total", kind="power", state="completed") >= 1
    assert total(jobs, "racksmith_job_duration_seconds_count", outcome="completed") >= 1
    assert total(jobs, "racksmith_bmc_requests_total", method="POST") >= 1
    # The job's ticks came back while it waited for PowerState (nacked: rescheduled), and none
    # of that counts as a redelivery.
    tick, handled = "racksmith.cmd.job.tick", "racksmith_nats_received_processed_messages_total"
    assert total(jobs, handled, handler=tick, status="nacked") >= 1
    assert total(jobs, handled, handler=tick, status="acked") >= 1
    assert total(jobs, "racksmith_command_redeliveries_total", consumer="jobs") == 0
    processed = "racksmith_nats_received_processed_messages_total"
    for process, handler in (
        (scanner, "racksmith.cmd.scan.chunk"),
        (registrar, "racksmith.cmd.node.register"),
        (inventory, "racksmith.cmd.server.inventory"),
    ):
        assert total(process, processed, handler=handler, status="acked") >= 1
    published = "racksmith_nats_published_messages_total"
    assert total(api, published, destination="racksmith.cmd.node.register") == HEALTHY
    assert total(api, "racksmith_http_requests_total", route="/api/node/register/") == 1
    relayed = sum(total(s, "racksmith_events_published_total") for s in scraped.values())
    assert relayed >= HEALTHY
    for process in scraped.values():  # JetStream is read by every process
        pending = [s for s in process if s.name == "racksmith_jetstream_consumer_pending"]
        assert {s.labels["consumer"] for s in pending} == {c.durable for c in CONSUMERS}


def _descends(collector: Collector, span: Span, ancestor: Span) -> bool:
    return ancestor in collector.ancestors(span)


async def test_one_trace_spans_the_request_the_handler_and_its_bmc_requests(
    platform: Platform, run: dict[str, Any]
) -> None:
    collector = platform.collector
    found: dict[str, Any] = {}

    async def traced() -> bool:
        for handler in collector.spans:
            if not (
                handler.service == "racksmith-registrar"
                and handler.kind == CONSUMER
                and handler.name == "racksmith.cmd.node.register process"
            ):
                continue
            chain = collector.ancestors(handler)
            requests = [s for s in chain if s.kind == SERVER and s.service == "racksmith-api"]
            bmc = [
                s
                for s in collector.spans
                if s.kind == CLIENT
                and s.name.startswith("redfish ")
                and s.service == "racksmith-registrar"
                and _descends(collector, s, handler)
            ]
            inventories = [
                s
                for s in collector.spans
                if s.kind == CONSUMER
                and s.name == "racksmith.cmd.server.inventory process"
                and _descends(collector, s, handler)
            ]
            events = [
                s
                for s in collector.spans
                if s.kind == PRODUCER
                and s.name == "io.racksmith.node.registered publish"
                and _descends(collector, s, handler)
            ]
            if requests and bmc and events and inventories:
                found.update(
                    handler=handler,
                    request=requests[0],
                    bmc=bmc,
                    events=events,
                    inventories=inventories,
                )
                return True
        return False

    await _until(traced, "one trace from the API through the registrar to the BMC", 30)
    handler, request = found["handler"], found["request"]
    assert request.attributes["http.route"] == "/api/node/register/"
    in_trace = [request, *found["bmc"], *found["events"], *found["inventories"]]
    assert {s.trace_id for s in in_trace} == {handler.trace_id}
    # The registration's first inventory (queued by the handler) continues the same trace.
    assert {s.service for s in found["inventories"]} == {"racksmith-inventory"}
    logins = [s for s in found["bmc"] if s.attributes["http.request.method"] == "POST"]
    assert logins and logins[0].attributes["racksmith.bmc.vendor"] in {"dell", "hpe", "wiwynn"}
    # Its log lines carry the trace id.
    lines = platform.workers["registrar"].log_lines()
    assert any(
        line.get("event") == "registration.done" and line.get("trace_id") == handler.trace_id
        for line in lines
    )

    # The scan: the API request, the range's expansion and each chunk, one trace.
    chunks = [
        s
        for s in collector.spans
        if s.service == "racksmith-scanner" and s.name == "racksmith.cmd.scan.chunk process"
    ]
    assert chunks
    roots = [collector.ancestors(chunk)[-1] for chunk in chunks]
    assert any(
        root.service == "racksmith-api"
        and root.attributes.get("http.route", "").endswith("/run_scan/")
        for root in roots
    )


async def test_tracing_is_off_without_an_exporter(platform: Platform) -> None:
    """The suite's own process configures no exporter: no SDK, no spans, no trace ids."""
    from opentelemetry import trace

    from shared.observability import tracing

    assert os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") is None
    assert not tracing.enabled()
    assert tracing.client_span("redfish GET", {}) is None
    assert tracing.current_context() == {}
    assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
