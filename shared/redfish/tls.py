"""TLS policy for talking to a BMC: off, CA bundle, or pinned certificate fingerprint.

BMC certificates are self-signed almost everywhere, so verification is a per-auth-profile
choice rather than a global default. The result of `TlsPolicy.ssl()` is what aiohttp takes as
its ``ssl`` argument.
"""

from __future__ import annotations

import functools
import hashlib
import ssl
import warnings
from dataclasses import dataclass, field

import aiohttp

SslArgument = ssl.SSLContext | aiohttp.Fingerprint


def legacy_insecure_context() -> ssl.SSLContext:
    """A context that verifies nothing and still talks to old BMC TLS stacks.

    BMCs in the field still run old TLS stacks (iDRAC 7, iLO 4); we must still reach them, so
    the deprecation of TLS 1.0 is deliberately accepted here and nowhere else. Cached: building
    a context is not free and one per BMC session adds up over a fleet.
    """
    return _legacy_insecure_context()


@functools.cache
def _legacy_insecure_context() -> ssl.SSLContext:
    # PROTOCOL_TLS_CLIENT rather than create_default_context(): no point loading the system CA
    # store into a context that never verifies.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    return context


@functools.lru_cache(maxsize=64)
def _ca_context(ca_bundle: str) -> ssl.SSLContext:
    # Only the given CAs are trusted (not the system store): a BMC profile's bundle is the
    # organisation's internal CA, and a public CA vouching for a BMC address means nothing.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # check_hostname on, CERT_REQUIRED
    context.load_verify_locations(cadata=ca_bundle)
    return context


@functools.cache
def _system_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def normalise_fingerprint(value: str) -> str:
    """Lower-case hex without separators; accepts ``AB:CD:...`` as browsers show it."""
    cleaned = value.strip().replace(":", "").replace(" ", "").lower()
    if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise ValueError("fingerprint must be the hex SHA-256 (64 hex digits) of the certificate")
    return cleaned


def certificate_fingerprint(der: bytes) -> str:
    """Hex SHA-256 of a DER certificate, the form `TlsPolicy.fingerprint` expects."""
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class TlsPolicy:
    """How to check a BMC's certificate.

    Precedence: a pinned ``fingerprint`` wins (it is the most specific statement), then a
    ``ca_bundle`` (PEM text; host name checked against the certificate's SAN), then
    ``verify=True`` alone (system trust store), else no verification.
    """

    verify: bool = False
    ca_bundle: str | None = field(default=None, repr=False)
    fingerprint: str | None = None

    def __post_init__(self) -> None:
        if self.fingerprint is not None:
            object.__setattr__(self, "fingerprint", normalise_fingerprint(self.fingerprint))

    @property
    def description(self) -> str:
        if self.fingerprint is not None:
            return "pinned fingerprint"
        if self.ca_bundle is not None:
            return "CA bundle"
        return "system trust store" if self.verify else "no verification"

    def ssl(self) -> SslArgument:
        if self.fingerprint is not None:
            # aiohttp compares the leaf certificate's digest after the handshake and raises
            # ServerFingerprintMismatch; the chain itself is not verified.
            return aiohttp.Fingerprint(bytes.fromhex(self.fingerprint))
        if self.ca_bundle is not None:
            return _ca_context(self.ca_bundle)
        if self.verify:
            return _system_context()
        return legacy_insecure_context()
