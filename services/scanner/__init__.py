"""Scanner worker: expands scan ranges into chunks and probes addresses for Redfish services."""
