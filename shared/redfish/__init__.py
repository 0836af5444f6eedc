"""Racksmith's Redfish client: the one place that talks Redfish to BMCs.

Usage::

    pool = RedfishPool()  # one per process
    async with pool.session("https://10.0.0.5", user, password, TlsPolicy()) as bmc:
        systems = await read_systems(bmc)
"""

from shared.redfish.client import ClientLimits, RedfishPool, RedfishSession
from shared.redfish.errors import (
    AuthenticationFailed,
    BmcBusy,
    BmcUnreachable,
    CertificateMismatch,
    ProtocolError,
    RedfishError,
    ResourceNotFound,
)
from shared.redfish.readers import read_systems
from shared.redfish.resources import ComputerSystem, Resource, ServiceRoot
from shared.redfish.tls import TlsPolicy

__all__ = [
    "AuthenticationFailed",
    "BmcBusy",
    "BmcUnreachable",
    "CertificateMismatch",
    "ClientLimits",
    "ComputerSystem",
    "ProtocolError",
    "RedfishError",
    "RedfishPool",
    "RedfishSession",
    "Resource",
    "ResourceNotFound",
    "ServiceRoot",
    "TlsPolicy",
    "read_systems",
]
