"""Password hashing (argon2), API tokens (JWT with simplejwt-compatible claims), and keyed
fingerprints of text that must not be kept in clear."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import jwt
from pwdlib import PasswordHash
from pwdlib.hashers.argon2 import Argon2Hasher

from shared.core import statedir
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
    value = generate()
    statedir.write_file(path, value)
    return value


class Fingerprinter:
    """Keyed fingerprints (HMAC-SHA256) of text that must not be logged or stored in clear — the
    username typed at a failed login, often a password typed into the wrong field. Stable for
    one server secret, so repeated attempts correlate (and replicas sharing the secret agree);
    useless without the secret, where a plain hash of a short text is undone by hashing
    guesses."""

    def __init__(self, secret: str) -> None:
        # A key of its own, derived from the server secret, rather than the signing key itself.
        self._key = hmac.new(secret.encode(), b"racksmith.fingerprint", hashlib.sha256).digest()

    def __call__(self, text: str, length: int = 32) -> str:
        return hmac.new(self._key, text.encode(), hashlib.sha256).hexdigest()[:length]


class InvalidTokenError(Exception):
    """Mirrors simplejwt's ``token_not_valid`` error."""


@dataclass(frozen=True)
class IssuedToken:
    token: str
    jti: str
    expires_at: datetime


# simplejwt's claims, plus the user's token version (``ver``) and the login session the token
# belongs to (``sid``): see services.api.auth.
REQUIRED_CLAIMS = ["exp", "iat", "jti", "token_type", "user_id", "ver", "sid"]


class TokenCodec:
    """Signs with the current key; also accepts tokens signed with ``previous`` keys, so the
    signing key can be rotated without ending every session at once."""

    def __init__(self, secret: str, settings: Settings, previous: Sequence[str] = ()) -> None:
        self._secret = secret
        self._keys = (secret, *previous)
        self._lifetimes: dict[TokenType, timedelta] = {
            "access": timedelta(seconds=settings.access_token_lifetime_s),
            "refresh": timedelta(seconds=settings.refresh_token_lifetime_s),
        }

    def issue(
        self, user_id: int, token_type: TokenType, *, version: int, session: str
    ) -> IssuedToken:
        now = datetime.now(UTC)
        jti = uuid.uuid4().hex
        expires_at = now + self._lifetimes[token_type]
        claims = {
            "token_type": token_type,
            "exp": expires_at,
            "iat": now,
            "jti": jti,
            "user_id": user_id,
            "ver": version,
            "sid": session,
        }
        return IssuedToken(jwt.encode(claims, self._secret, algorithm=ALGORITHM), jti, expires_at)

    def decode(self, token: str, expected_type: TokenType) -> dict[str, Any]:
        claims: dict[str, Any] | None = None
        for key in self._keys:
            try:
                claims = jwt.decode(
                    token, key, algorithms=[ALGORITHM], options={"require": REQUIRED_CLAIMS}
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise InvalidTokenError("Token is invalid or expired") from exc
            break
        if claims is None:
            raise InvalidTokenError("Token is invalid or expired")
        if claims.get("token_type") != expected_type:
            raise InvalidTokenError("Token has wrong type")
        if not isinstance(claims["user_id"], int) or not isinstance(claims["ver"], int):
            raise InvalidTokenError("Token is invalid or expired")
        return claims
