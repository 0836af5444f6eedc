"""The firmware catalog and OS images over the API: streamed uploads with their checks, the
guide's fields and filters, metadata changes, deletion and what refuses it, access, events."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.artifacts import grants
from shared.artifacts.filestore import FileStore
from shared.models import Artifact
from shared.platform.runtime import Runtime
from tests.artifacts.helpers import multipart, sha256, upload
from tests.conftest import bearer, obtain_tokens
from tests.discovery_helpers import events

pytestmark = [pytest.mark.broker]

BIOS = os.urandom(300_000)


def stored_files(runtime: Runtime) -> set[str]:
    store = runtime.artifacts
    assert isinstance(store, FileStore)
    return {str(p.relative_to(store.root)) for p in store.root.rglob("*") if p.is_file()}


async def firmware_count(client: httpx.AsyncClient, headers: dict[str, str]) -> int:
    count: int = (await client.get("/api/firmware/", headers=headers)).json()["count"]
    return count


async def add_bios(
    client: httpx.AsyncClient, headers: dict[str, str], unique: str, **extra: Any
) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "name": f"PowerEdge BIOS {unique}",
        "firmware_type": "BIOS",
        "version": "2.19.1",
        "manufacturer": "Dell Inc.",
        "models": ["PowerEdge R650", "PowerEdge R750"],
        "apply_requires": "host_reboot",
        "software_ids": ["159"],
        "name_pattern": "BIOS*",
    } | extra
    response = await upload(client, headers, "/api/firmware/", BIOS, f"BIOS_{unique}.EXE", **fields)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_upload_stores_the_file_and_the_guide_fields_filter_it(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    before = stored_files(runtime)
    created = await add_bios(client, admin_headers, unique, sha256=sha256(BIOS).upper())
    assert created["status"] == "ready"
    assert created["sha256"] == sha256(BIOS)
    assert created["size"] == len(BIOS)
    assert created["filename"] == f"BIOS_{unique}.EXE"
    assert created["models"] == ["PowerEdge R650", "PowerEdge R750"]
    assert created["apply_requires"] == "host_reboot"
    assert created["software_ids"] == ["159"]
    for field in ("id", "name", "firmware_type", "version", "manufacturer", "created_at"):
        assert field in created
    # The bytes are in the store, exactly once, byte for byte.
    (new,) = stored_files(runtime) - before
    assert (runtime.artifacts.local_path(new) or Path()).read_bytes() == BIOS

    await add_bios(client, admin_headers, unique + "n", firmware_type="NIC", version="22.31.6")
    detail = await client.get(f"/api/firmware/{created['id']}/", headers=admin_headers)
    assert detail.json() == created

    async def names(query: str) -> list[str]:
        response = await client.get(
            f"/api/firmware/?search={unique}&{query}", headers=admin_headers
        )
        assert response.status_code == 200, response.text
        return [r["name"] for r in response.json()["results"]]

    assert await names("firmware_type=BIOS") == [created["name"]]
    assert await names("firmware_type=NIC") == [f"PowerEdge BIOS {unique}n"]
    assert await names("version=2.19.1&manufacturer=Dell%20Inc.") == [created["name"]]
    assert await names("status=ready&ordering=-name") == [
        f"PowerEdge BIOS {unique}n",
        created["name"],
    ]

    fired = await events(runtime, f"racksmith.evt.firmware.{created['id']}.>")
    assert [e["type"] for e in fired] == [
        "io.racksmith.firmware.added",
        "io.racksmith.firmware.ready",
    ]
    assert fired[1]["data"]["sha256"] == sha256(BIOS)


async def test_a_wrong_sha256_after_the_file_is_a_400_and_nothing_is_kept(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    """Fields may follow the file part; the check still happens before anything is kept."""
    before_files, before_count = stored_files(runtime), await firmware_count(client, admin_headers)

    def body(declared: str) -> tuple[bytes, str]:
        return multipart(
            [
                ("file", BIOS, "bmc.bin"),
                ("name", f"iDRAC {unique}".encode(), None),
                ("firmware_type", b"BMC", None),
                ("version", b"7.00.00.171", None),
                ("sha256", declared.encode(), None),
            ]
        )

    content, content_type = body("0" * 64)
    response = await client.post(
        "/api/firmware/", content=content, headers=admin_headers | {"Content-Type": content_type}
    )
    assert response.status_code == 400
    assert list(response.json()) == ["sha256"]
    assert sha256(BIOS) in response.json()["sha256"][0]
    assert stored_files(runtime) == before_files
    assert await firmware_count(client, admin_headers) == before_count

    content, content_type = body(sha256(BIOS))
    response = await client.post(
        "/api/firmware/", content=content, headers=admin_headers | {"Content-Type": content_type}
    )
    assert response.status_code == 201, response.text
    assert response.json()["firmware_type"] == "BMC"


@pytest.mark.parametrize(
    ("parts", "field"),
    [
        (
            [("name", b"x", None), ("firmware_type", b"FLASH", None), ("version", b"1", None)],
            "firmware_type",
        ),
        ([("name", b"x", None), ("firmware_type", b"BIOS", None)], "version"),
        ([("name", b"x", None), ("firmware_type", b"BIOS", None), ("version", b"1", None)], "file"),
        (
            [("name", b"x", None), ("firmware_type", b"BIOS", None), ("sha256", b"abc", None)],
            "sha256",
        ),
    ],
)
async def test_bad_uploads_name_the_field_and_keep_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    parts: list[tuple[str, bytes, str | None]],
    field: str,
) -> None:
    before_files, before_count = stored_files(runtime), await firmware_count(client, admin_headers)
    with_file = [*parts, ("file", BIOS, "f.bin")] if field != "file" else parts
    content, content_type = multipart(with_file)
    response = await client.post(
        "/api/firmware/", content=content, headers=admin_headers | {"Content-Type": content_type}
    )
    assert response.status_code == 400, response.text
    assert field in response.json()
    assert stored_files(runtime) == before_files
    assert await firmware_count(client, admin_headers) == before_count


async def test_files_over_the_cap_are_refused(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    runtime: Runtime,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    before = stored_files(runtime)
    monkeypatch.setattr(runtime.settings, "firmware_max_bytes", len(BIOS) - 1)
    # No Content-Length to judge by (chunked): the cap is enforced on the bytes as they arrive.
    content, content_type = multipart(
        [
            ("name", b"big", None),
            ("firmware_type", b"BIOS", None),
            ("version", b"1", None),
            ("file", BIOS, "big.bin"),
        ]
    )

    async def chunked() -> Any:
        for offset in range(0, len(content), 65536):
            yield content[offset : offset + 65536]

    response = await client.post(
        "/api/firmware/", content=chunked(), headers=admin_headers | {"Content-Type": content_type}
    )
    assert response.status_code == 400
    assert "at most" in response.json()["file"][0]
    assert stored_files(runtime) == before


async def test_metadata_changes_and_their_events(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    created = await add_bios(client, admin_headers, unique)
    url = f"/api/firmware/{created['id']}/"
    patched = await client.patch(
        url,
        json={"version": "2.20.0", "device_classes": ["aa3b3aa4-5a7a-4a8c-9bcd-0123456789ab"]},
        headers=admin_headers,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["version"] == "2.20.0"
    assert patched.json()["sha256"] == created["sha256"]
    bad = await client.patch(url, json={"device_classes": ["not-a-guid"]}, headers=admin_headers)
    assert bad.status_code == 400 and "device_classes" in bad.json()
    null = await client.patch(url, json={"name": None}, headers=admin_headers)
    assert null.status_code == 400 and "name" in null.json()
    put = await client.put(
        url,
        json={"name": "renamed", "firmware_type": "BIOS", "version": "2.20.0"},
        headers=admin_headers,
    )
    assert put.status_code == 200
    assert put.json()["models"] == [] and put.json()["apply_requires"] == "none"
    unchanged = await client.patch(url, json={"name": "renamed"}, headers=admin_headers)
    assert unchanged.status_code == 200

    fired = await events(runtime, f"racksmith.evt.firmware.{created['id']}.>")
    updates = [e["data"]["changed"] for e in fired if e["type"].endswith(".updated")]
    assert updates == [
        ["version", "device_classes"],
        [
            "name",
            "manufacturer",
            "models",
            "apply_requires",
            "software_ids",
            "device_classes",
            "name_pattern",
        ],
    ]


async def test_delete_is_refused_while_in_use(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    created = await add_bios(client, admin_headers, unique)
    async with runtime.db.session() as session:
        from shared.models import FirmwareBinary

        entry = await session.get(FirmwareBinary, created["id"])
        assert entry is not None
        grants.grant(
            session, runtime.settings, entry.artifact, f"test {unique}", timedelta(hours=1)
        )
        # An expired grant is no use any more: it does not block.
        grants.grant(session, runtime.settings, entry.artifact, "old", timedelta(seconds=-1))
        await session.commit()
        key = entry.artifact.storage_key
    assert key is not None and await runtime.artifacts.exists(key)

    refused = await client.delete(f"/api/firmware/{created['id']}/", headers=admin_headers)
    assert refused.status_code == 409
    body = refused.json()
    assert len(body["grants"]) == 1
    assert f"test {unique}" in body["detail"]

    async with runtime.db.session() as session:
        assert await grants.revoke_purpose(session, f"test {unique}") == 1
        await session.commit()
    deleted = await client.delete(f"/api/firmware/{created['id']}/", headers=admin_headers)
    assert deleted.status_code == 204
    assert (
        await client.get(f"/api/firmware/{created['id']}/", headers=admin_headers)
    ).status_code == 404
    assert not await runtime.artifacts.exists(key)
    async with runtime.db.session() as session:
        from sqlmodel import col, select

        left = await session.exec(select(Artifact).where(col(Artifact.storage_key) == key))
        assert left.first() is None
    fired = await events(runtime, f"racksmith.evt.firmware.{created['id']}.>")
    assert fired[-1]["type"] == "io.racksmith.firmware.deleted"


async def test_everyone_reads_superusers_write(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    created = await add_bios(client, admin_headers, unique)
    username = f"reader-{unique}"
    made = await client.post(
        "/api/users/",
        json={"username": username, "password": "password-123"},
        headers=admin_headers,
    )
    assert made.status_code == 201, made.text
    reader = bearer((await obtain_tokens(client, username, "password-123"))["access"])
    assert (await client.get("/api/firmware/", headers=reader)).status_code == 200
    assert (await client.get(f"/api/firmware/{created['id']}/", headers=reader)).status_code == 200
    assert (
        await upload(
            client,
            reader,
            "/api/firmware/",
            b"x",
            "x.bin",
            name="x",
            firmware_type="BIOS",
            version="1",
        )
    ).status_code == 403
    assert (
        await client.patch(f"/api/firmware/{created['id']}/", json={"name": "y"}, headers=reader)
    ).status_code == 403
    assert (
        await client.delete(f"/api/firmware/{created['id']}/", headers=reader)
    ).status_code == 403
    assert (await client.get("/api/firmware/")).status_code == 401


async def test_os_images_and_the_guides_arch_filter(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime, unique: str
) -> None:
    iso = os.urandom(100_000)
    made = []
    for arch, family in (("x86_64", "linux"), ("aarch64", "linux"), ("x86_64", "esxi")):
        response = await upload(
            client,
            admin_headers,
            "/api/os/",
            iso,
            f"installer {unique} {arch}.iso",
            name=f"image {unique} {arch} {family}",
            version="24.04",
            arch=arch,
            os_family=family,
            boot_modes=["uefi", "legacy"],
        )
        assert response.status_code == 201, response.text
        made.append(response.json())
    first = made[0]
    assert first["image_type"] == "iso" and first["boot_modes"] == ["uefi", "legacy"]
    # Spaces are not safe in every BMC's URL parser: the stored name has none.
    assert first["filename"] == f"installer_{unique}_x86_64.iso"
    async with runtime.db.session() as session:
        artifact = await session.get(Artifact, (await _artifact_id(runtime, first["id"])))
        assert artifact is not None and artifact.content_type == "application/x-iso9660-image"

    listed = await client.get(f"/api/os/?arch=x86_64&search={unique}", headers=admin_headers)
    assert {r["id"] for r in listed.json()["results"]} == {made[0]["id"], made[2]["id"]}
    listed = await client.get(f"/api/os/?os_family=esxi&search={unique}", headers=admin_headers)
    assert [r["id"] for r in listed.json()["results"]] == [made[2]["id"]]
    bad = await upload(
        client, admin_headers, "/api/os/", iso, "x.iso", name="x", arch="sparc", os_family="linux"
    )
    assert bad.status_code == 400 and "arch" in bad.json()
    fired = await events(runtime, f"racksmith.evt.os_image.{first['id']}.>")
    assert [e["type"] for e in fired][:2] == [
        "io.racksmith.os_image.added",
        "io.racksmith.os_image.ready",
    ]


async def _artifact_id(runtime: Runtime, image_id: int) -> int:
    from shared.models import OSImage

    async with runtime.db.session() as session:
        image = await session.get(OSImage, image_id)
        assert image is not None
        return image.artifact_id


async def test_other_bodies(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    text = await client.post(
        "/api/firmware/", content=b"hello", headers=admin_headers | {"Content-Type": "text/plain"}
    )
    assert text.status_code == 415
    huge = await client.post(
        "/api/os/",
        content=b'{"name": "' + b"x" * 70_000 + b'"}',
        headers=admin_headers | {"Content-Type": "application/json"},
    )
    assert huge.status_code == 413
    broken = await client.post(
        "/api/os/", content=b"{", headers=admin_headers | {"Content-Type": "application/json"}
    )
    assert broken.status_code == 400 and "non_field_errors" in broken.json()


async def test_openapi_documents_both_ways_to_add(client: httpx.AsyncClient) -> None:
    schema = (await client.get("/api/schema/?format=json")).json()
    for path, noun in (("/api/firmware/", "firmware_type"), ("/api/os/", "arch")):
        post = schema["paths"][path]["post"]
        content = post["requestBody"]["content"]
        form = content["multipart/form-data"]["schema"]
        assert form["properties"]["file"] == {
            "type": "string",
            "format": "binary",
            "description": "The file.",
        }
        assert noun in form["properties"] and "file" in form["required"]
        assert {"source_url", "sha256", noun} <= set(
            content["application/json"]["schema"]["properties"]
        )
        assert {"201", "202", "400", "409"} - set(post["responses"]) <= {"409"}
        assert "409" in schema["paths"][path + "{entry_id}/"]["delete"]["responses"]
    params = {p["name"] for p in schema["paths"]["/api/os/"]["get"]["parameters"]}
    assert {"arch", "os_family", "search"} <= params
    params = {p["name"] for p in schema["paths"]["/api/firmware/"]["get"]["parameters"]}
    assert {"firmware_type", "manufacturer", "version", "search"} <= params
