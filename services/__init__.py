"""Racksmith's processes: the API and the workers."""
