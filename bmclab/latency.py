"""Per-request latency distributions.

Syntax (all numbers in milliseconds unless suffixed with ``s``):

* ``0`` or ``none`` - no added latency.
* ``realistic`` - lognormal, median 200 ms, p99 2 s, capped at 5 s (what iDRAC 9 / iLO 5
  measure in the field).
* ``150`` or ``150ms`` or ``0.15s`` - fixed delay.
* ``MEDIAN,P99`` e.g. ``200,2000`` - lognormal with that median and 99th percentile,
  capped at twice the p99 so a single request cannot stall a test forever.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

# z-score of the 99th percentile of the standard normal distribution.
_Z99 = 2.3263478740408408


def _parse_ms(text: str) -> float:
    text = text.strip().lower()
    if text.endswith("ms"):
        return float(text[:-2])
    if text.endswith("s"):
        return float(text[:-1]) * 1000.0
    return float(text)


@dataclass(frozen=True)
class Latency:
    """A distribution of delays in seconds."""

    median: float = 0.0
    p99: float = 0.0
    cap: float = 0.0

    @classmethod
    def parse(cls, spec: str) -> Latency:
        spec = spec.strip().lower()
        if spec in ("", "0", "none", "off"):
            return cls()
        if spec in ("realistic", "default"):
            return cls(0.2, 2.0, 5.0)
        try:
            if "," in spec:
                median_text, p99_text = spec.split(",", 1)
                median, p99 = _parse_ms(median_text) / 1000.0, _parse_ms(p99_text) / 1000.0
                if median <= 0 or p99 < median:
                    raise ValueError("need 0 < median <= p99")
                return cls(median, p99, 2.0 * p99)
            fixed = _parse_ms(spec) / 1000.0
        except ValueError as exc:
            raise ValueError(f"bad latency spec {spec!r}: {exc}") from exc
        if fixed < 0:
            raise ValueError(f"bad latency spec {spec!r}: negative")
        return cls(fixed, fixed, fixed)

    def sample(self, rng: random.Random) -> float:
        if self.median <= 0:
            return 0.0
        if self.p99 == self.median:
            return self.median
        sigma = math.log(self.p99 / self.median) / _Z99
        return min(self.cap, rng.lognormvariate(math.log(self.median), sigma))
