"""HTTP byte ranges (RFC 9110 §14) as the artifact server honours them: one range per request.

BMCs resume and parallelise image downloads with single ranges; a request for several ranges is
answered with the whole file (a server may ignore ``Range``), which every client handles.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ByteRange:
    start: int
    # Exclusive.
    end: int

    @property
    def length(self) -> int:
        return self.end - self.start

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end - 1}/{size}"


class UnsatisfiableRangeError(Exception):
    """No byte of the range lies in the file: 416."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one range ``header`` asks for within ``size`` bytes; None: send the whole file
    (no header, a header we do not understand, or several ranges)."""
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if not first:  # suffix: the last N bytes
            suffix = int(last)
            if suffix < 0:
                return None
            if suffix == 0 or size == 0:
                raise UnsatisfiableRangeError(header)
            return ByteRange(max(0, size - suffix), size)
        start = int(first)
        end = int(last) + 1 if last else max(size, start + 1)
    except ValueError:
        return None
    if start < 0 or end <= start:
        return None
    if start >= size:
        raise UnsatisfiableRangeError(header)
    return ByteRange(start, min(end, size))
