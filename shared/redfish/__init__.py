"""Racksmith's Redfish client: the one place that talks Redfish to BMCs.

Usage::

    pool = RedfishPool()  # one per process
    async with pool.session("https://10.0.0.5", user, password, TlsPolicy()) as bmc:
        systems = await read_systems(bmc)
        inventory = await read_inventory(bmc, systems[0])
"""

from shared.redfish.cache import SessionCache
from shared.redfish.client import ClientLimits, RedfishPool, RedfishSession, WriteResult
from shared.redfish.errors import (
    AuthenticationFailed,
    BmcBusy,
    BmcUnreachable,
    CertificateMismatch,
    ProtocolError,
    RedfishError,
    RequestRefused,
    ResourceNotFound,
    ResponseLost,
)
from shared.redfish.inventory import Inventory, read_inventory
from shared.redfish.readers import read_systems
from shared.redfish.resources import (
    ComputerSystem,
    Drive,
    EthernetInterface,
    FirmwareComponent,
    MemoryModule,
    Processor,
    Resource,
    ServiceRoot,
    Storage,
    StorageController,
    UpdateService,
    Volume,
)
from shared.redfish.tls import TlsPolicy

__all__ = [
    "AuthenticationFailed",
    "BmcBusy",
    "BmcUnreachable",
    "CertificateMismatch",
    "ClientLimits",
    "ComputerSystem",
    "Drive",
    "EthernetInterface",
    "FirmwareComponent",
    "Inventory",
    "MemoryModule",
    "Processor",
    "ProtocolError",
    "RedfishError",
    "RedfishPool",
    "RedfishSession",
    "RequestRefused",
    "Resource",
    "ResourceNotFound",
    "ResponseLost",
    "ServiceRoot",
    "SessionCache",
    "Storage",
    "StorageController",
    "TlsPolicy",
    "UpdateService",
    "Volume",
    "WriteResult",
    "read_inventory",
    "read_systems",
]
