"""/api/node_discovery/auth_profile/ and its credentials: CRUD, write-only encrypted passwords."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import col, select

from shared.core.crypto import CredentialCipher
from shared.core.security import MissingSecretError
from shared.core.settings import Settings
from shared.models import Credential
from shared.platform.runtime import Runtime
from tests.conftest import bearer, obtain_tokens

PROFILES = "/api/node_discovery/auth_profile/"
SECRET = "Very-Secret-BMC-Password-42"


async def _profile(
    client: httpx.AsyncClient, headers: dict[str, str], **body: object
) -> dict[str, object]:
    response = await client.post(
        PROFILES,
        json={"node_classification": "Dell DC1", "bmc": "redfish", **body},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


async def test_profile_crud(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    profile = await _profile(client, admin_headers)
    assert profile["verify_tls"] is False and profile["credentials_count"] == 0
    url = f"{PROFILES}{profile['id']}/"
    patched = await client.patch(url, json={"tls_fingerprint": "AB" * 32}, headers=admin_headers)
    assert patched.json()["tls_fingerprint"] == "ab" * 32
    replaced = await client.put(url, json={"node_classification": "HPE DC2"}, headers=admin_headers)
    assert replaced.json()["tls_fingerprint"] == "ab" * 32  # PUT keeps what it was not sent
    replaced = await client.put(
        url, json={"node_classification": "HPE DC2", "tls_fingerprint": None}, headers=admin_headers
    )
    assert replaced.json()["tls_fingerprint"] is None
    assert replaced.json()["node_classification"] == "HPE DC2"
    listed = await client.get(f"{PROFILES}?search=hpe+dc2", headers=admin_headers)
    assert profile["id"] in [p["id"] for p in listed.json()["results"]]
    assert (await client.delete(url, headers=admin_headers)).status_code == 204
    assert (await client.get(url, headers=admin_headers)).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"bmc": "ipmi"}, "bmc"),
        ({"node_classification": ""}, "node_classification"),
        ({"tls_fingerprint": "xyz"}, "tls_fingerprint"),
        ({"ca_bundle": "not a certificate"}, "ca_bundle"),
    ],
)
async def test_profile_validation(
    client: httpx.AsyncClient, admin_headers: dict[str, str], body: dict[str, object], field: str
) -> None:
    response = await client.post(
        PROFILES, json={"node_classification": "x", "bmc": "redfish", **body}, headers=admin_headers
    )
    assert response.status_code == 400
    assert field in response.json()


async def test_credentials_are_write_only_ordered_and_encrypted(
    client: httpx.AsyncClient, admin_headers: dict[str, str], runtime: Runtime
) -> None:
    profile = await _profile(client, admin_headers)
    url = f"{PROFILES}{profile['id']}/credentials/"
    first = await client.post(
        url, json={"username": "root", "password": SECRET}, headers=admin_headers
    )
    second = await client.post(
        url, json={"username": "admin", "password": SECRET}, headers=admin_headers
    )
    early = await client.post(
        url, json={"username": "ops", "password": SECRET, "order": 0}, headers=admin_headers
    )
    for response in (first, second, early):
        assert response.status_code == 201
        assert SECRET not in response.text and "password" not in response.json()
    assert (first.json()["order"], second.json()["order"]) == (0, 1)
    listed = await client.get(url, headers=admin_headers)
    assert SECRET not in listed.text
    assert [c["username"] for c in listed.json()["results"]] == ["root", "ops", "admin"]
    detail = await client.get(f"{PROFILES}{profile['id']}/", headers=admin_headers)
    assert detail.json()["credentials_count"] == 3

    async with runtime.db.session() as session:
        stored = (
            await session.exec(
                select(Credential.password_encrypted).where(
                    col(Credential.auth_profile_id) == profile["id"]
                )
            )
        ).all()
    assert all(SECRET not in token for token in stored)
    assert {runtime.credentials.decrypt(token) for token in stored} == {SECRET}

    gone = await client.delete(f"{url}{first.json()['id']}/", headers=admin_headers)
    assert gone.status_code == 204
    wrong_profile = await client.delete(
        f"{PROFILES}987654/credentials/{second.json()['id']}/", headers=admin_headers
    )
    assert wrong_profile.status_code == 404
    assert len((await client.get(url, headers=admin_headers)).json()["results"]) == 2


async def test_credential_validation(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    profile = await _profile(client, admin_headers)
    url = f"{PROFILES}{profile['id']}/credentials/"
    response = await client.post(url, json={"username": "root"}, headers=admin_headers)
    assert response.status_code == 400 and "password" in response.json()
    missing = await client.post(
        f"{PROFILES}987654/credentials/",
        json={"username": "a", "password": "b"},
        headers=admin_headers,
    )
    assert missing.status_code == 404


async def test_profiles_are_superuser_only(
    client: httpx.AsyncClient, admin_headers: dict[str, str], unique: str
) -> None:
    await client.post(
        "/api/users/",
        json={"username": f"ap-{unique}", "password": "password-123"},
        headers=admin_headers,
    )
    headers = bearer((await obtain_tokens(client, f"ap-{unique}", "password-123"))["access"])
    profile = await _profile(client, admin_headers)
    for method, url in [
        ("GET", PROFILES),
        ("POST", PROFILES),
        ("GET", f"{PROFILES}{profile['id']}/credentials/"),
        ("POST", f"{PROFILES}{profile['id']}/credentials/"),
    ]:
        assert (await client.request(method, url, json={}, headers=headers)).status_code == 403


def test_production_mode_refuses_to_invent_a_credential_key(settings: Settings) -> None:
    production = settings.model_copy(update={"mode": "production", "credential_key": None})
    with pytest.raises(MissingSecretError, match="RACKSMITH_CREDENTIAL_KEY"):
        CredentialCipher.from_settings(production)
    key = SecretStr(CredentialCipher.generate_key())
    configured = settings.model_copy(update={"mode": "production", "credential_key": key})
    cipher = CredentialCipher.from_settings(configured)
    assert cipher.decrypt(cipher.encrypt(SECRET)) == SECRET
