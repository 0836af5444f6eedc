"""What the API process holds for the lifetime of the app (on ``app.state``)."""

from __future__ import annotations

from dataclasses import dataclass

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from shared.core.crypto import CredentialCipher
from shared.core.security import TokenCodec, load_or_create_secret
from shared.core.settings import Settings
from shared.platform.runtime import Runtime


@dataclass
class TokenThrottle:
    """Per-client-address attempts on the token endpoint (in-process; one limiter per replica)."""

    limiter: MovingWindowRateLimiter
    rate: RateLimitItem

    @classmethod
    def from_settings(cls, settings: Settings) -> TokenThrottle:
        return cls(MovingWindowRateLimiter(MemoryStorage()), parse(settings.token_rate_limit))


@dataclass
class ApiState:
    settings: Settings
    runtime: Runtime
    tokens: TokenCodec
    token_throttle: TokenThrottle
    credentials: CredentialCipher

    @classmethod
    def build(cls, runtime: Runtime) -> ApiState:
        settings = runtime.settings
        secret = load_or_create_secret(
            settings,
            "secret_key",
            settings.secret_key.get_secret_value() if settings.secret_key else None,
        )
        return cls(
            settings=settings,
            runtime=runtime,
            tokens=TokenCodec(secret, settings),
            token_throttle=TokenThrottle.from_settings(settings),
            credentials=runtime.credentials,
        )
