"""Virtual media of a simulated BMC: InsertMedia/EjectMedia with each vendor's rules, and reading
the mounted image over HTTP the way a BMC does — in ``Range`` pieces, never the whole file at once.

An insert is checked against the flavour's `HostRules` (parameters refused, URLs with a query
refused, one image at a time), then the BMC asks the image's server for its first bytes: an
image it cannot reach is refused with ``CouldNotEstablishConnection``, as iDRAC and iLO refuse a
share they cannot open. The ``ghost_mount`` fault answers 204 and mounts nothing (the slot reads
``Inserted: false``), as some firmware does on its first try; ``image_unreachable`` makes every
image URL unreachable from this BMC.
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp

from bmclab.faults import FaultKind
from bmclab.outcome import Outcome
from bmclab.tree import JsonObject, Resource

if TYPE_CHECKING:
    from bmclab.bmc import Bmc

# The first bytes a BMC reads to check that an image is there.
_PROBE_BYTES = 2048
_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=30)
_CD_TYPES = frozenset({"CD", "DVD"})


class ImageUnreachable(Exception):
    """The image's server could not be reached, refused the request or sent no bytes."""


@dataclass(frozen=True)
class Mounted:
    """An image in a VirtualMedia slot."""

    path: str
    image: str
    cd: bool


def slots(bmc: Bmc) -> list[Resource]:
    """Every VirtualMedia resource of the BMC (under its Manager or its System)."""
    found = []
    for path in list(bmc.store):
        if path.rsplit("/", 2)[-2:-1] == ["VirtualMedia"]:
            resource = bmc.store.get(path)
            if resource is not None and "Inserted" in resource.body:
                found.append(resource)
    return found


def mounted(bmc: Bmc) -> list[Mounted]:
    result = []
    for resource in slots(bmc):
        body = resource.body
        image = body.get("Image")
        if body.get("Inserted") and isinstance(image, str) and image:
            types = body.get("MediaTypes")
            cd = isinstance(types, list) and bool(_CD_TYPES & set(types))
            result.append(Mounted(str(body.get("@odata.id")), image, cd))
    return result


async def insert(bmc: Bmc, path: str, payload: JsonObject) -> Outcome:
    image = payload.get("Image")
    if not isinstance(image, str) or not image:
        return Outcome(
            400,
            message="The action InsertMedia requires the parameter Image.",
            message_id="ActionParameterMissing",
            message_args=("InsertMedia", "Image"),
        )
    rules = bmc.rules
    for name in rules.media_refused_parameters:
        if name in payload:
            return Outcome(
                400,
                message=f"The parameter {name} for the action InsertMedia is not supported on "
                "the target resource.",
                message_id="ActionParameterNotSupported",
                message_args=(name, "InsertMedia"),
                resolution=f"Remove the parameter {name} and resubmit the request.",
            )
    if rules.media_refuses_query and "?" in image:
        return Outcome(
            400,
            message=f"The value '{image}' for the parameter Image is of a different format than "
            "the parameter can accept.",
            message_id="ActionParameterValueFormatError",
            message_args=(image, "Image", "InsertMedia"),
        )
    resource = bmc.store.get(path)
    assert resource is not None
    if resource.body.get("Inserted"):
        return Outcome(
            409,
            message="The virtual media is already in use; eject it first.",
            message_id="ResourceInUse",
        )
    if rules.media_one_slot and mounted(bmc):
        return Outcome(
            409,
            message="Another virtual media image is mounted; this BMC mounts one at a time.",
            message_id="ResourceInUse",
        )
    bmc.counters.media_inserts += 1
    if bmc.ghost_mounts_left > 0:
        bmc.ghost_mounts_left -= 1
        bmc.counters.ghost_mounts += 1
        return Outcome(204)  # accepted, nothing mounted
    try:
        await read(bmc, image, 0, _PROBE_BYTES)
    except ImageUnreachable as exc:
        return Outcome(
            400,
            message=f"An attempt to access the resource {image} was not successful because a "
            f"connection could not be established ({exc}).",
            message_id="CouldNotEstablishConnection",
            message_args=(image,),
            resolution="Make sure the image server is reachable from the BMC and retry.",
        )
    set_media(resource, image)
    return Outcome(204)


def eject(bmc: Bmc, path: str) -> Outcome:
    resource = bmc.store.get(path)
    assert resource is not None
    set_media(resource, None)
    return Outcome(204)


def set_media(resource: Resource, image: str | None) -> None:
    resource.body["Image"] = image
    resource.body["Inserted"] = image is not None
    resource.body["ConnectedVia"] = "URI" if image else "NotConnected"
    if "ImageName" in resource.body or image:
        resource.body["ImageName"] = image.rsplit("/", 1)[-1] if image else None
    resource.changed()


def _client(bmc: Bmc) -> aiohttp.ClientSession:
    if bmc.media_client is None or bmc.media_client.closed:
        # BMCs fetch from whatever image server they are given and do not check its certificate.
        connector = aiohttp.TCPConnector(ssl=False, limit=4)
        bmc.media_client = aiohttp.ClientSession(connector=connector, timeout=_TIMEOUT)
    return bmc.media_client


async def read(bmc: Bmc, url: str, start: int, length: int) -> bytes:
    """``length`` bytes of the image at ``url`` from ``start`` (fewer at its end), by one Range
    request."""
    if bmc.has(FaultKind.IMAGE_UNREACHABLE):
        raise ImageUnreachable("no route to the image server")
    headers = {"Range": f"bytes={start}-{start + length - 1}"}
    try:
        async with _client(bmc).get(url, headers=headers) as resp:
            if resp.status == 416:
                return b""
            if resp.status not in (200, 206):
                raise ImageUnreachable(f"HTTP {resp.status}")
            body = await resp.content.read(length) if resp.status == 200 else await resp.read()
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise ImageUnreachable(str(exc) or type(exc).__name__) from exc
    bmc.counters.media_bytes += len(body)
    return body


async def chunks(bmc: Bmc, url: str) -> AsyncIterator[bytes]:
    """The whole image at ``url``, one Range request per ``media_chunk`` bytes."""
    size = bmc.behaviour.media_chunk
    offset = 0
    while True:
        piece = await read(bmc, url, offset, size)
        if piece:
            yield piece
        if len(piece) < size:
            return
        offset += len(piece)


async def fetch(bmc: Bmc, url: str) -> bytes:
    """A small image (a seed) in full."""
    out = io.BytesIO()
    async for piece in chunks(bmc, url):
        out.write(piece)
    return out.getvalue()


async def drain(bmc: Bmc, url: str) -> int:
    """Read a whole image and keep nothing, as an installer copying it to disk; its size."""
    total = 0
    async for piece in chunks(bmc, url):
        total += len(piece)
    return total
