"""Password hashing (argon2) and API tokens (JWT with simplejwt-compatible claims)."""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from shared.core.settings import Settings

TokenType = Literal["access", "refresh"]
ALGORITHM = "HS256"

_password_hash = PasswordHash((Argon2Hasher(),))
# Verifying against this keeps a failed login for an unknown user as slow as for a known one,
# so response time does not reveal which usernames exist.
_DUMMY_HASH = _password_hash.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _password_hash.hash(password)


def verify_password(password: str, password_hash: str | None) -> bool:
    if password_hash is None:
        _password_hash.verify(password, _DUMMY_HASH)
        return False
    return _password_hash.verify(password, password_hash)


class MissingSecretError(RuntimeError):
    pass


def load_or_create_secret(
    settings: Settings,
    name: str,
    configured: str | None,
    *,
    generate: Callable[[], str] = lambda: secrets.token_urlsafe(48),
) -> str:
    """A configured secret wins; embedded mode generates one once into the state dir."""
    if configured:
        return configured
    if settings.mode == "production":
        raise MissingSecretError(
            f"RACKSMITH_{name.upper()} must be set in production mode (refusing to invent one)"
        )
    path: Path = settings.state_dir / f"{name}.key"
    if path.exists():
        return path.read_text().strip()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    value = generate()
    path.touch(mode=0o600)
    path.write_text(value)
    return value


class InvalidTokenError(Exception):
    """Mirrors simplejwt's ``token_not_valid`` error."""


class TokenCodec:
    def __init__(self, secret: str, settings: Settings) -> None:
        self._secret = secret
        self._lifetimes: dict[TokenType, timedelta] = {
            "access": timedelta(seconds=settings.access_token_lifetime_s),
            "refresh": timedelta(seconds=settings.refresh_token_lifetime_s),
        }

    def issue(self, user_id: int, token_type: TokenType) -> str:
        now = datetime.now(UTC)
        claims = {
            "token_type": token_type,
            "exp": now + self._lifetimes[token_type],
            "iat": now,
            "jti": uuid.uuid4().hex,
            "user_id": user_id,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str, expected_type: TokenType) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                options={"require": ["exp", "iat", "jti", "token_type", "user_id"]},
            )
        except jwt.PyJWTError as exc:
            raise InvalidTokenError("Token is invalid or expired") from exc
        if claims.get("token_type") != expected_type:
            raise InvalidTokenError("Token has wrong type")
        return claims
