"""Registrar worker: logs in to a node's BMC with an auth profile and creates its servers."""
