"""Helpers for the observability tests: an in-process OTLP/HTTP trace receiver, an address
that never answers a TCP connect, scraping and reading Prometheus metrics, and the metric names
the dashboard, the alert rules and docs/observability.md refer to."""

from __future__ import annotations

import gzip
import json
import re
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import yaml
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "observability" / "dashboard.json"
ALERTS = ROOT / "deploy" / "observability" / "alerts.yaml"
DOC = ROOT / "docs" / "observability.md"

SERVER, CLIENT, PRODUCER, CONSUMER = 2, 3, 4, 5  # OTLP span kinds


@dataclass(frozen=True)
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    service: str
    attributes: dict[str, Any]


@dataclass
class Collector:
    """Receives what the processes' OTLP/HTTP exporters send (``POST /v1/traces``)."""

    spans: list[Span] = field(default_factory=list)
    endpoint: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest()
        export.ParseFromString(body)
        for resource_spans in export.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.spans.append(
                        Span(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            service=resource.get("service.name", ""),
                            attributes={a.key: _value(a.value) for a in span.attributes},
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    def by_id(self) -> dict[str, Span]:
        return {s.span_id: s for s in self.spans}

    def ancestors(self, span: Span) -> list[Span]:
        """``span``'s parents up to the root, as far as they were received."""
        spans, chain = self.by_id(), []
        while span.parent_id and span.parent_id in spans:
            span = spans[span.parent_id]
            chain.append(span)
        return chain


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


@asynccontextmanager
async def collecting() -> AsyncIterator[Collector]:
    collector = Collector()
    app = web.Application()
    app.router.add_post("/v1/traces", collector.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    collector.endpoint = f"http://{host}:{port}"
    try:
        yield collector
    finally:
        await runner.cleanup()


@contextmanager
def silent_address(ip: str, port: int) -> Iterator[None]:
    """``ip:port`` accepts nothing more and drops further SYNs: a connect there times out, as
    at a firewalled address (a listener whose accept queue is full, on loopback)."""
    listener = socket.socket()
    listener.bind((ip, port))
    listener.listen(0)
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with suppress(BlockingIOError):
            filler.connect((ip, port))
        fillers.append(filler)
    try:
        yield
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    return [
        Sample(s.name, dict(s.labels), s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
    ]


async def scrape(url: str) -> list[Sample]:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    assert response.headers["content-type"].startswith("text/plain"), url
    return parse(response.text)


def total(samples: list[Sample], name: str, **labels: str) -> float:
    return sum(
        s.value
        for s in samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    )


def has_samples(samples: list[Sample], family: str) -> bool:
    names = {family, f"{family}_bucket", f"{family}_count", f"{family}_sum"}
    return any(s.name in names for s in samples)


# -- what the artefacts refer to ----------------------------------------------------------------


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (parsing fails on invalid PromQL)."""
    names: set[str] = set()

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector) and node.name:
            names.add(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expression), visit)
    return names


# What Grafana puts in place of the dashboard's variables before it sends a query.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$job": ".*"}


def grafana_query(expression: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expression = expression.replace(variable, value)
    return expression


def dashboard_expressions() -> dict[str, str]:
    """Every target expression of the dashboard (variables filled in as Grafana does), keyed by
    panel title and refId."""
    dashboard = json.loads(DASHBOARD.read_text())
    found = {}
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            found[f"{panel['title']} / {target['refId']}"] = grafana_query(target["expr"])
    return found


def alert_rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["spec"]["groups"] for rule in group["rules"]]


def documented_families() -> list[str]:
    """The metric families the table in docs/observability.md lists (first column)."""
    text = DOC.read_text()
    section = text.split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(racksmith_[a-z_]+)`", section, flags=re.MULTILINE)
