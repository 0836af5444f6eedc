"""Webhooks worker: turns events into deliveries for the matching webhooks and sends them."""
