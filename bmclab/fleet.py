"""`Lab`: start and stop a whole fleet of simulated BMCs inside the current event loop."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import random
import shutil
import ssl
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from bmclab.bmc import Behaviour, Bmc
from bmclab.certs import CertificateAuthority, server_context
from bmclab.faults import Fault, FaultKind, assign_faults
from bmclab.flavours import FLAVOURS, build_tree
from bmclab.latency import Latency
from bmclab.manifest import ManifestEntry, manifest_json
from bmclab.mockup import load_mockup
from bmclab.rules import MOCKUP_RULES
from bmclab.server import Listener
from bmclab.tree import ResourceStore

_LOOPBACK = ipaddress.IPv4Network("127.0.0.0/8")


@dataclass(frozen=True)
class LabConfig:
    count: int = 1
    network: str = "127.0.10.0/24"
    port: int = 8443
    flavours: Sequence[str] = ("dell", "hpe", "supermicro", "openbmc")
    username: str = "root"
    password: str = "calvin"  # noqa: S105 - public simulator default, like iDRAC's
    latency: str = "realistic"
    faults: str = ""
    seed: int = 0
    session_limit: int = 8
    session_timeout: float = 1800.0
    inflight_limit: int = 4
    queue_timeout: float = 10.0
    power_delay: float = 2.0
    power_on_holdoff: float = 3.0
    task_duration: float = 3.0
    bmc_reset_time: float = 5.0
    install_time: float = 5.0
    drip_interval: float = 0.5
    flap_period: float = 5.0
    mockups: Sequence[Path] = field(default_factory=tuple)
    state_dir: Path | None = None

    def addresses(self) -> list[str]:
        """Host k of the network for k = 1..count+len(mockups), checked to stay on loopback."""
        net = ipaddress.ip_network(self.network, strict=False)
        if not isinstance(net, ipaddress.IPv4Network) or not net.subnet_of(_LOOPBACK):
            raise ValueError(f"network {self.network} is not inside 127.0.0.0/8")
        total = self.count + len(self.mockups)
        usable = net.num_addresses - (2 if net.prefixlen < 31 else 0)
        if total > usable:
            raise ValueError(f"network {self.network} has {usable} hosts, need {total}")
        first = 1 if net.prefixlen < 31 else 0
        return [str(net.network_address + first + k) for k in range(total)]

    def behaviour(self) -> Behaviour:
        return Behaviour(
            username=self.username,
            password=self.password,
            session_limit=self.session_limit,
            session_timeout=self.session_timeout,
            inflight_limit=self.inflight_limit,
            queue_timeout=self.queue_timeout,
            power_delay=self.power_delay,
            power_on_holdoff=self.power_on_holdoff,
            task_duration=self.task_duration,
            bmc_reset_time=self.bmc_reset_time,
            install_time=self.install_time,
            drip_interval=self.drip_interval,
            flap_period=self.flap_period,
            latency=Latency.parse(self.latency),
        )


class Lab:
    def __init__(self, config: LabConfig) -> None:
        self.config = config
        self.manifest: list[ManifestEntry] = []
        self.bmcs: list[Bmc] = []
        self.ca_cert_pem = b""
        self.ca_cert_path: Path | None = None
        self.manifest_path: Path | None = None
        self._listeners: list[Listener] = []
        self._tmp: Path | None = None
        self._cert_dir: Path | None = None
        self._contexts: dict[str, ssl.SSLContext] = {}

    async def __aenter__(self) -> Lab:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def bmc(self, key: str | int) -> Bmc:
        """A BMC by address or by 0-based manifest index."""
        if isinstance(key, int):
            return self.bmcs[key]
        for bmc in self.bmcs:
            if bmc.address == key:
                return bmc
        raise KeyError(key)

    def impersonate(self, key: str | int) -> None:
        """From the next connection on, answer at this BMC's address with a certificate of
        another CA: what an impostor taking over the address shows (or a BMC whose certificate
        was regenerated). Same tree, same credentials — only the certificate tells; what is
        offered over such a connection is recorded in the BMC's ``impostor_received``."""
        bmc = self.bmc(key)
        assert self._cert_dir is not None, "start the lab first"
        chain, pem_key = CertificateAuthority.generate("Impostor CA").issue(bmc.address)
        context = server_context(self._cert_dir, f"{bmc.address}-impostor", chain, pem_key)
        bmc.impostor_context = self._listener(bmc).ssl_context = context

    def restore_certificate(self, key: str | int) -> None:
        """Serve the BMC's own certificate again (undoes `impersonate`)."""
        bmc = self.bmc(key)
        self._listener(bmc).ssl_context = self._contexts[bmc.address]
        bmc.impostor_context = None

    def _listener(self, bmc: Bmc) -> Listener:
        return next(listener for listener in self._listeners if listener.bmc is bmc)

    def counters(self, key: str | int) -> dict[str, Any]:
        """A BMC's counters (by address or index), as ``GET /bmclab/counters`` serves them."""
        return self.bmc(key).counts()

    def manifest_json(self) -> str:
        return manifest_json(self.manifest, self.ca_cert_pem)

    def build(self) -> list[ManifestEntry]:
        """Create every BMC's tree and the manifest without opening sockets.

        Idempotent; `start` calls it. Useful to inspect what a configuration yields.
        """
        if self.bmcs:
            return self.manifest
        cfg = self.config
        unknown = [f for f in cfg.flavours if f not in FLAVOURS]
        if unknown or not cfg.flavours:
            raise ValueError(f"unknown flavours {unknown}; known: {sorted(FLAVOURS)}")
        addresses = cfg.addresses()
        faults = assign_faults(cfg.faults, addresses, cfg.seed)
        behaviour = cfg.behaviour()
        serials: set[str] = set()
        for index, address in enumerate(addresses):
            bmc, entry = self._make_bmc(index, address, faults[index], behaviour, serials)
            self.bmcs.append(bmc)
            self.manifest.append(entry)
        return self.manifest

    async def start(self) -> None:
        cfg = self.config
        self.build()
        if cfg.state_dir is not None:
            cert_dir = cfg.state_dir / "certs"
        else:
            self._tmp = Path(tempfile.mkdtemp(prefix="bmclab-"))
            cert_dir = self._tmp
        cert_dir.mkdir(parents=True, exist_ok=True)
        self._cert_dir = cert_dir
        ca = CertificateAuthority.generate()
        self.ca_cert_pem = ca.cert_pem
        if cfg.state_dir is not None:
            self.ca_cert_path = cfg.state_dir / "ca.pem"
            self.ca_cert_path.write_bytes(ca.cert_pem)
        for bmc in self.bmcs:
            chain, key = ca.issue(bmc.address)
            context = server_context(cert_dir, bmc.address, chain, key)
            self._contexts[bmc.address] = context
            self._listeners.append(Listener(bmc, context))
        try:
            for listener in self._listeners:
                await listener.open()
                listener.bmc.on_listening(listener)
        except BaseException:
            await self.stop()
            raise
        if cfg.state_dir is not None:
            self.manifest_path = cfg.state_dir / "manifest.json"
            self.manifest_path.write_text(self.manifest_json())

    def _make_bmc(
        self, index: int, address: str, fault: Fault | None, behaviour: Behaviour, serials: set[str]
    ) -> tuple[Bmc, ManifestEntry]:
        cfg = self.config
        store = ResourceStore()
        if index < cfg.count:
            flavour = FLAVOURS[cfg.flavours[index % len(cfg.flavours)]]
            rng = random.Random(f"serial:{cfg.seed}:{index}")
            serial = flavour.serial(rng)
            while serial in serials:  # unique per lab, still deterministic
                serial = flavour.serial(rng)
            serials.add(serial)
            tree = build_tree(
                flavour,
                seed=cfg.seed,
                index=index,
                address=address,
                serial=serial,
                session_timeout=int(cfg.session_timeout),
                username=cfg.username,
            )
            for path, body in tree.resources.items():
                store.put(path, body)
            kind, name = "synthetic", flavour.name
            manufacturer = tree.manufacturer
            model: str | None = tree.model
            serial_out: str | None = tree.serial
            system_ids, sessions_path = tree.system_ids, "/redfish/v1/SessionService/Sessions"
            task_format = flavour.ids.task
            rules = flavour.rules
            update_style = flavour.name
        else:
            info = load_mockup(Path(cfg.mockups[index - cfg.count]), store)
            kind, name = "mockup", f"mockup:{info.name}"
            manufacturer, model, serial_out = info.manufacturer, info.model, info.serial
            system_ids, sessions_path = info.system_ids, info.sessions_path
            task_format = "{n}"
            rules = MOCKUP_RULES
            update_style = "generic"
        bmc = Bmc(
            index=index,
            address=address,
            port=cfg.port,
            kind=name,
            store=store,
            behaviour=behaviour,
            sessions_path=sessions_path,
            task_id_format=task_format,
            fault=fault,
            seed=cfg.seed,
            rules=rules,
            update_style=update_style,
        )
        entry = ManifestEntry(
            index=index,
            address=address,
            port=cfg.port,
            url=bmc.url,
            kind=kind,
            flavour=name,
            manufacturer=manufacturer,
            model=model,
            serial=serial_out,
            system_count=len(system_ids),
            system_ids=system_ids,
            fault=str(fault) if fault else None,
            username=cfg.username,
            password=cfg.password,
            credentials_ok=fault is None or fault.kind is not FaultKind.BADCREDS,
        )
        return bmc, entry

    async def stop(self) -> None:
        for bmc in self.bmcs:
            await bmc.stop()
        await asyncio.gather(
            *(listener.stop() for listener in self._listeners), return_exceptions=True
        )
        self._listeners.clear()
        if self._tmp is not None:
            with contextlib.suppress(OSError):
                shutil.rmtree(self._tmp)
            self._tmp = None
