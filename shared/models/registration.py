"""Authentication profiles and their BMC credentials (passwords encrypted at rest)."""

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, field_validator
from pydantic import Field as PField
from sqlalchemy import Text
from sqlmodel import Field, SQLModel

from shared.core.clock import utcnow
from shared.models.base import reject_null


class AuthProfile(SQLModel, table=True):
    __tablename__ = "auth_profile"

    id: int | None = Field(default=None, primary_key=True)
    node_classification: str = Field(max_length=200, index=True)
    bmc: str = Field(default="redfish", max_length=32)
    # TLS policy for registration and everything after it. Default: trust the certificate
    # discovery recorded for the node (and refuse one that changed since).
    verify_tls: bool = False
    ca_bundle: str | None = Field(default=None, sa_type=Text)
    tls_fingerprint: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Credential(SQLModel, table=True):
    __tablename__ = "credential"

    id: int | None = Field(default=None, primary_key=True)
    auth_profile_id: int = Field(foreign_key="auth_profile.id", ondelete="CASCADE", index=True)
    username: str = Field(max_length=150)
    # Fernet token; the clear text exists only in a registrar's memory while it logs in.
    password_encrypted: str = Field(sa_type=Text)
    order: int = 0
    created_at: datetime = Field(default_factory=utcnow)


# --- API shapes (not tables) -------------------------------------------------------------------

SHA256_HEX = r"^[0-9a-fA-F]{64}$"
# A CA bundle of a few dozen certificates.
MAX_CA_BUNDLE = 64 * 1024


def _pem_certificates(value: str | None) -> str | None:
    if value is not None and "-----BEGIN CERTIFICATE-----" not in value:
        raise ValueError("Expected one or more PEM certificates.")
    return value


class AuthProfileCreate(BaseModel):
    node_classification: str = PField(min_length=1, max_length=200)
    bmc: Literal["redfish"] = "redfish"
    verify_tls: bool = False
    ca_bundle: str | None = PField(default=None, max_length=MAX_CA_BUNDLE)
    tls_fingerprint: str | None = PField(default=None, max_length=64, pattern=SHA256_HEX)

    _pem = field_validator("ca_bundle")(_pem_certificates)


class AuthProfileUpdate(BaseModel):
    _not_null = reject_null("node_classification", "bmc", "verify_tls")
    _pem = field_validator("ca_bundle")(_pem_certificates)

    node_classification: str | None = PField(default=None, min_length=1, max_length=200)
    bmc: Literal["redfish"] | None = None
    verify_tls: bool | None = None
    ca_bundle: str | None = PField(default=None, max_length=MAX_CA_BUNDLE)
    tls_fingerprint: str | None = PField(default=None, max_length=64, pattern=SHA256_HEX)


class AuthProfilePublic(BaseModel):
    id: int
    node_classification: str
    bmc: str
    verify_tls: bool
    ca_bundle: str | None
    tls_fingerprint: str | None
    credentials_count: int
    created_at: datetime
    updated_at: datetime


class CredentialCreate(BaseModel):
    username: str = PField(min_length=1, max_length=150)
    password: str = PField(min_length=1, max_length=1024, repr=False)
    order: int | None = PField(default=None, ge=0)


class CredentialPublic(BaseModel):
    """A credential as the API shows it: never the password."""

    id: int
    username: str
    order: int
