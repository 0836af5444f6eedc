"""The BMC-facing artifact server: serves granted artifacts over plain HTTP with Range support."""
