"""Encryption at rest for BMC credentials (Fernet: AES-128-CBC + HMAC-SHA256).

The key comes from ``RACKSMITH_CREDENTIAL_KEY`` (a Kubernetes Secret in production). The embedded
default generates one into the state dir on first use; production mode refuses to run without a
configured key rather than invent one that a second replica would not share.
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken

from shared.core.security import load_or_create_secret
from shared.core.settings import Settings


class CredentialDecryptError(RuntimeError):
    """A stored credential cannot be decrypted with the configured key (wrong or rotated key)."""


class CredentialCipher:
    def __init__(self, key: str) -> None:
        self._fernet = Fernet(key.encode())

    @classmethod
    def from_settings(cls, settings: Settings) -> CredentialCipher:
        configured = settings.credential_key.get_secret_value() if settings.credential_key else None
        return cls(
            load_or_create_secret(
                settings,
                "credential_key",
                configured,
                generate=cls.generate_key,
            )
        )

    @staticmethod
    def generate_key() -> str:
        return Fernet.generate_key().decode()

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise CredentialDecryptError(
                "a stored BMC credential cannot be decrypted: RACKSMITH_CREDENTIAL_KEY is not the "
                "key it was encrypted with"
            ) from None
