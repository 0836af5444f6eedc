"""Code shared by every Racksmith service: settings, logging, database, messaging, security."""
