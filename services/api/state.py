"""What the API process holds for the lifetime of the app (on ``app.state``)."""

from __future__ import annotations

from dataclasses import dataclass

from services.api.auth import Principals, Sessions
from services.api.throttle import LoginThrottle
from shared.core.crypto import CredentialCipher
from shared.core.security import Fingerprinter, TokenCodec, load_or_create_secret
from shared.core.settings import Settings
from shared.platform.runtime import Runtime


def server_secret(settings: Settings) -> str:
    return load_or_create_secret(
        settings,
        "secret_key",
        settings.secret_key.get_secret_value() if settings.secret_key else None,
    )


def token_codec(settings: Settings, secret: str) -> TokenCodec:
    previous = settings.secret_key_previous
    keys = previous.get_secret_value().split(",") if previous else []
    return TokenCodec(secret, settings, [key.strip() for key in keys if key.strip()])


@dataclass
class ApiState:
    settings: Settings
    runtime: Runtime
    tokens: TokenCodec
    sessions: Sessions
    principals: Principals
    login_throttle: LoginThrottle
    credentials: CredentialCipher
    fingerprint: Fingerprinter

    @classmethod
    def build(cls, runtime: Runtime) -> ApiState:
        settings = runtime.settings
        secret = server_secret(settings)
        tokens = token_codec(settings, secret)
        fingerprint = Fingerprinter(secret)
        return cls(
            settings=settings,
            runtime=runtime,
            tokens=tokens,
            sessions=Sessions(tokens),
            principals=Principals(runtime.db, settings.auth_cache_s),
            login_throttle=LoginThrottle(settings, runtime, fingerprint),
            credentials=runtime.credentials,
            fingerprint=fingerprint,
        )
