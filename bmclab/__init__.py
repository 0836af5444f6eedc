"""Simulated fleet of Redfish BMCs on loopback, for Racksmith's tests and benchmarks."""

from bmclab.bmc import Bmc
from bmclab.fleet import Lab, LabConfig
from bmclab.manifest import ManifestEntry

__all__ = ["Bmc", "Lab", "LabConfig", "ManifestEntry"]
