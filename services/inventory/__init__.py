"""Inventory worker: collects hardware and firmware inventory of registered servers."""
