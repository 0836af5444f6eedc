"""The fake OS installer a lab host runs when it boots an installer image.

A boot that uses up a one-time override to ``Cd`` (with a CD mounted) or ``UefiHttp`` (with an
``HttpBootUri``) starts it; ``BootProgress`` reads ``OSBootStarted`` meanwhile. It reads the
whole image with Range requests, as firmware copying an installer into memory does, then looks
for a cloud-init NoCloud seed: a mounted medium labelled ``cidata``, else ``cidata.iso`` beside
the image. After the lab's ``install_time`` it has "installed" the image and does what the seed's
``#cloud-config`` asks: ``phone_home`` (a POST of ``instance_id``, ``hostname`` and ``fqdn`` to
its URL, ``$INSTANCE_ID`` filled in, up to ``tries`` times), else it powers the machine off
(cloud-init's ``power_state``; also what an installer without a seed does). The next boot from
disk runs the installed system: ``OSRunning``, ``HostName`` from the seed's ``local-hostname``,
and the lab's counters report the deployed image (``deployed_os``).

Faults: ``installer_hang`` boots and never finishes; an image the host cannot read (or
``image_unreachable``) leaves it in ``OSBootStarted`` too, as a real installer stuck on a read.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import aiohttp
import pycdlib
import yaml

from bmclab import media
from bmclab.faults import FaultKind

if TYPE_CHECKING:
    from bmclab.host import Host

SEED_BESIDE_IMAGE = "cidata.iso"
SEED_LABEL = "cidata"
# Generous: the call-home token is used up by the first POST that reaches the API, so a client
# that gave up on a slow answer and retried would only meet 404 and never learn it got through.
_CALL_HOME_TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass(frozen=True)
class Seed:
    meta: dict[str, Any]
    user: dict[str, Any]

    @property
    def instance_id(self) -> str:
        return str(self.meta.get("instance-id", "iid-local01"))

    @property
    def hostname(self) -> str | None:
        name = self.meta.get("local-hostname") or self.user.get("hostname")
        return str(name) if name else None


@dataclass(frozen=True)
class Installed:
    """What the installer left on the host's disk."""

    image: str
    hostname: str | None


def boot_source(host: Host, boot: dict[str, Any]) -> str | None:
    """The installer image a one-time boot to ``target`` starts, if there is one."""
    target = boot.get("BootSourceOverrideTarget")
    if target == "UefiHttp":
        uri = boot.get("HttpBootUri")
        return uri if isinstance(uri, str) and uri else None
    if target == "Cd":
        cds = [m for m in media.mounted(host.bmc) if m.cd]
        return cds[0].image if cds else None
    return None


async def run(host: Host, image: str) -> None:
    """Install ``image`` on ``host``; cancelled when the host loses power."""
    bmc = host.bmc
    bmc.counters.installer_boots += 1
    try:
        await media.drain(bmc, image)
    except media.ImageUnreachable:
        bmc.counters.installer_stuck += 1
        return
    seed = await _find_seed(host, image)
    if bmc.has(FaultKind.INSTALLER_HANG):
        bmc.counters.installer_stuck += 1
        await asyncio.Event().wait()
    await asyncio.sleep(bmc.behaviour.install_time)
    host.installed = Installed(image.rsplit("/", 1)[-1], seed.hostname if seed else None)
    bmc.counters.deployed_os = host.installed.image
    phone_home = seed.user.get("phone_home") if seed else None
    if isinstance(phone_home, dict) and isinstance(phone_home.get("url"), str):
        await _call_home(host, seed, phone_home)  # type: ignore[arg-type]
        return
    host.power_off()


async def _find_seed(host: Host, image: str) -> Seed | None:
    bmc = host.bmc
    candidates = [m.image for m in media.mounted(bmc) if m.image != image]
    candidates.append(urljoin(image, SEED_BESIDE_IMAGE))
    for url in candidates:
        try:
            data = await media.fetch(bmc, url)
        except media.ImageUnreachable:
            continue
        files = _seed_files(data)
        if files is None:
            continue
        bmc.counters.seeds_read += 1
        return Seed(_yaml(files.get("meta-data")), _yaml(files.get("user-data")))
    return None


def _seed_files(image: bytes) -> dict[str, bytes] | None:
    """The files of a ``cidata`` ISO by their Joliet names; None for anything else."""
    disc = pycdlib.PyCdlib()
    try:
        disc.open_fp(io.BytesIO(image))
    except pycdlib.pycdlibexception.PyCdlibException:
        return None
    try:
        label = bytes(disc.pvd.volume_identifier).decode("ascii", "replace").strip()
        if label.lower() != SEED_LABEL or not disc.has_joliet():
            return None
        files: dict[str, bytes] = {}
        for child in disc.list_children(joliet_path="/"):
            if child.is_dot() or child.is_dotdot() or child.is_dir():
                continue
            name = bytes(child.file_identifier()).decode("utf-16-be").split(";", 1)[0]
            out = io.BytesIO()
            disc.get_file_from_iso_fp(out, joliet_path=f"/{name}")
            files[name] = out.getvalue()
        return files
    finally:
        disc.close()


def _yaml(data: bytes | None) -> dict[str, Any]:
    if not data:
        return {}
    with contextlib.suppress(yaml.YAMLError):
        loaded = yaml.safe_load(data)
        if isinstance(loaded, dict):
            return loaded
    return {}


async def _call_home(host: Host, seed: Seed, settings: dict[str, Any]) -> None:
    url = str(settings["url"]).replace("$INSTANCE_ID", seed.instance_id)
    tries = settings.get("tries", 10)
    form = {
        "instance_id": seed.instance_id,
        "hostname": seed.hostname or "",
        "fqdn": seed.hostname or "",
    }
    bmc = host.bmc
    async with aiohttp.ClientSession(timeout=_CALL_HOME_TIMEOUT) as http:
        for _ in range(tries if isinstance(tries, int) and tries > 0 else 10):
            try:
                async with http.post(url, data=form) as resp:
                    if resp.status < 300:
                        bmc.counters.calls_home += 1
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            await asyncio.sleep(1.0)
