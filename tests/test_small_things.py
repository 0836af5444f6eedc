"""Small behaviours people notice: quiet logs and server names a person can tell apart."""

from __future__ import annotations

import io
import logging

from services.registrar.records import default_name
from shared.core.log import configure_logging
from shared.core.settings import Settings
from shared.redfish import ComputerSystem


def test_faststreams_task_callback_lines_stay_out_of_the_info_log() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(Settings(log_level="INFO", log_format="json"))
        out = io.StringIO()
        root.handlers[0].setStream(out)  # type: ignore[attr-defined]
        faststream = logging.getLogger("faststream")
        faststream.info("callback for Task-16360 is being executed...")
        faststream.info("nats consumer registrar started")
        lines = out.getvalue()
        assert "is being executed" not in lines
        assert "registrar started" in lines
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)


def _system(**body: object) -> ComputerSystem:
    return ComputerSystem.parse({"@odata.id": "/redfish/v1/Systems/1", "Name": "System", **body})


def test_a_servers_default_name_is_its_host_name_else_model_and_serial() -> None:
    assert default_name(_system(HostName="web-01.dc5", Model="PowerEdge R650")) == "web-01.dc5"
    assert (
        default_name(_system(HostName="", Model="PowerEdge R650", SerialNumber="CZJ0042"))
        == "PowerEdge R650 CZJ0042"
    )
    assert default_name(_system()) == "System"
