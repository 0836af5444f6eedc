"""Configuration parsing and validation that needs no running lab."""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import pytest

from bmclab import Lab, LabConfig
from bmclab.cli import add_arguments, config_from_args
from bmclab.latency import Latency
from bmclab.mockup import load_mockup
from bmclab.tree import ResourceStore
from tests.lab_net import LAB_NET


@pytest.mark.parametrize("network", ["10.0.0.0/24", "0.0.0.0/0", "128.0.0.0/24", "::1/128"])
def test_network_must_be_loopback(network: str) -> None:
    with pytest.raises(ValueError):
        LabConfig(network=network).addresses()


def test_addresses_are_kth_hosts() -> None:
    assert LabConfig(count=3, network="127.0.10.0/24").addresses() == [
        "127.0.10.1",
        "127.0.10.2",
        "127.0.10.3",
    ]
    with pytest.raises(ValueError):
        LabConfig(count=255, network="127.0.10.0/24").addresses()


def test_latency_syntax() -> None:
    rng = random.Random(1)
    assert Latency.parse("0").sample(rng) == 0.0
    assert Latency.parse("150").sample(rng) == pytest.approx(0.15)
    assert Latency.parse("0.2s").sample(rng) == pytest.approx(0.2)
    realistic = Latency.parse("realistic")
    samples = sorted(realistic.sample(rng) for _ in range(5000))
    assert 0.15 < samples[2500] < 0.25  # median ~200 ms
    assert max(samples) <= 5.0  # capped tail
    custom = Latency.parse("100,1000")
    assert max(custom.sample(rng) for _ in range(2000)) <= 2.0
    for bad in ("fast", "-5", "300,100"):
        with pytest.raises(ValueError):
            Latency.parse(bad)


async def test_cli_arguments_and_state_dir(tmp_path: Path) -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(
        [
            "--count",
            "2",
            "--network",
            f"{LAB_NET}.207.0/24",
            "--latency",
            "0",
            "--seed",
            "5",
            "--flavours",
            "hpe,openbmc",
            "--power-delay",
            "0.5",
            "--power-on-holdoff",
            "0",
            "--faults",
            "busy@1",
            "--state-dir",
            str(tmp_path),
        ]
    )
    config = config_from_args(args)
    assert config.flavours == ("hpe", "openbmc") and config.seed == 5
    assert config.power_delay == 0.5 and config.power_on_holdoff == 0
    async with Lab(config) as lab:
        assert lab.ca_cert_path is not None and lab.ca_cert_path.read_bytes() == lab.ca_cert_pem
        assert lab.manifest_path is not None
        doc = json.loads(lab.manifest_path.read_text())
        assert [b["flavour"] for b in doc["bmcs"]] == ["hpe", "openbmc"]
        assert doc["bmcs"][1]["fault"] == "busy"
        assert set(doc["bmcs"][0]) >= {"address", "port", "url", "serial", "credentials_ok"}


def test_mockup_headers_json_is_replayed(tmp_path: Path) -> None:
    root = tmp_path / "tiny" / "redfish" / "v1"
    (root / "Systems").mkdir(parents=True)
    (root / "index.json").write_text('{"@odata.id": "/redfish/v1/", "Name": "Tiny"}')
    (root / "Systems" / "index.json").write_text('{"Members": [], "Members@odata.count": 0}')
    (root / "Systems" / "headers.json").write_text(
        '{"GET": {"Allow": "GET", "Content-Length": "9", "X-Vendor": "tiny"}}'
    )
    store = ResourceStore()
    info = load_mockup(tmp_path / "tiny", store)
    assert info.name == "tiny" and info.system_ids == ()
    resource = store.get("/redfish/v1/Systems/")
    assert resource is not None
    assert resource.headers == {"Allow": "GET", "X-Vendor": "tiny"}
    assert resource.raw == (root / "Systems" / "index.json").read_bytes()
