"""The pieces of shared/observability on their own: label rules, failure classes, the tracing
configuration from OTEL_* variables, trace ids in log lines, metrics recorded only on commit."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from sqlalchemy import text

from services.jobs.kinds import KINDS
from services.registrar.login import RegistrationRefused
from shared.bmc.failures import failure_class
from shared.core.log import add_trace_ids
from shared.messaging.consumer import RetryLater
from shared.observability import metrics, tracing
from shared.observability.messaging import subject_label
from shared.platform.runtime import Runtime
from shared.redfish import (
    AuthenticationFailed,
    BmcBusy,
    BmcUnreachable,
    CertificateMismatch,
    ProtocolError,
    ResourceNotFound,
)

RACKSMITH = str(Path(sys.executable).with_name("racksmith"))


@pytest.mark.parametrize(
    ("reported", "label"),
    [
        ("Dell Inc.", "dell"),
        ("HPE", "hpe"),
        ("Hewlett Packard Enterprise", "hpe"),
        ("Supermicro", "supermicro"),
        ("Lenovo", "lenovo"),
        ("Wiwynn", "wiwynn"),
        ("OpenBMC", "openbmc"),
        ("Contoso", "contoso"),
        ("ACME Baseboard Controllers", "other"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_vendor_labels_come_from_a_fixed_list(reported: str | None, label: str) -> None:
    assert metrics.vendor_label(reported) == label
    assert label in metrics.VENDORS


def test_status_classes_and_methods_are_bounded() -> None:
    assert [metrics.status_class(s) for s in (200, 302, 404, 503, None, 999)] == [
        "2xx",
        "3xx",
        "4xx",
        "5xx",
        "error",
        "other",
    ]
    assert metrics.method_label("GET") == "GET"
    assert metrics.method_label("BREW") == "other"


def test_failure_classes() -> None:
    busy = BmcBusy("busy", status=503)
    try:
        raise RetryLater("retry", 5) from busy
    except RetryLater as retry:
        assert failure_class(retry) == "busy"
    assert failure_class(AuthenticationFailed("no")) == "credentials_refused"
    assert failure_class(CertificateMismatch("no")) == "certificate"
    assert failure_class(BmcUnreachable("no")) == "unreachable"
    assert failure_class(ResourceNotFound("no")) == "not_found"
    assert failure_class(ProtocolError("no")) == "not_redfish"
    assert failure_class(ValueError("no")) == "error"
    assert RegistrationRefused("no credential", "credentials_refused").cause in (
        metrics.FAILURE_REASONS
    )


def test_event_subjects_lose_their_entity_id() -> None:
    assert subject_label("racksmith.evt.node.42.registered") == "racksmith.evt.node.*.registered"
    assert subject_label("racksmith.cmd.node.register") == "racksmith.cmd.node.register"


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["OTLPSpanExporter"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["OTLPSpanExporter"]),
        ({"OTEL_TRACES_EXPORTER": "console"}, ["ConsoleSpanExporter"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp,console"}, ["OTLPSpanExporter", "ConsoleSpanExporter"]),
    ],
)
def test_tracing_is_on_only_when_otel_variables_name_an_exporter(
    environ: dict[str, str], exporters: list[str]
) -> None:
    assert [type(e).__name__ for e in tracing.exporters(environ)] == exporters


def test_unsupported_otel_settings_are_refused() -> None:
    with pytest.raises(tracing.TracingConfigError, match="HTTP/protobuf"):
        tracing.exporters(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}
        )
    with pytest.raises(tracing.TracingConfigError, match="zipkin"):
        tracing.exporters({"OTEL_TRACES_EXPORTER": "zipkin"})


async def test_a_process_with_unusable_otel_settings_stops_with_the_reason() -> None:
    process = await asyncio.create_subprocess_exec(
        RACKSMITH,
        "worker",
        "scanner",
        env={
            "PATH": "/usr/bin:/bin",
            "RACKSMITH_NATS_URL": "nats://127.0.0.1:1",
            "OTEL_TRACES_EXPORTER": "zipkin",
        },
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert b"OTEL_TRACES_EXPORTER=zipkin is not supported" in stderr


def test_log_lines_inside_a_span_carry_its_ids() -> None:
    assert "trace_id" not in add_trace_ids(None, "info", {"event": "outside"})
    tracer = TracerProvider().get_tracer("test")
    with tracer.start_as_current_span("work") as span:
        line = add_trace_ids(None, "info", {"event": "inside"})
    context = span.get_span_context()
    assert line["trace_id"] == format(context.trace_id, "032x")
    assert line["span_id"] == format(context.span_id, "016x")


def test_relaying_without_tracing_adds_no_headers() -> None:
    with tracing.publishing([("racksmith.evt.node.1.registered", "t", {})]) as headers:
        assert headers == [{}]


async def test_metrics_recorded_on_commit_only_count_what_committed(runtime: Runtime) -> None:
    counted: list[str] = []
    async with runtime.db.session() as session:
        await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        metrics.on_commit(session, lambda: counted.append("rolled back"))
        await session.rollback()
        await session.exec(text("SELECT 1"))  # type: ignore[call-overload]
        metrics.on_commit(session, lambda: counted.append("committed"))
        assert counted == []
        await session.commit()
    assert counted == ["committed"]


def test_job_kind_labels_are_the_registered_kinds() -> None:
    assert set(KINDS) == set(metrics.JOB_KINDS)
    assert metrics.job_kind_label("power") == "power"
    assert metrics.job_kind_label("something-new") == "other"
