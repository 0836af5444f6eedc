"""Binaries Racksmith keeps for BMCs to fetch (firmware packages, OS images): where their bytes
live (``store``), who may fetch them over the BMC-facing URL (``grants``), where a source URL may
point (``sources``), and what blocks deleting one (``usage``)."""
