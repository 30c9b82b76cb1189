"""Reconnect delays: exponential with full jitter, capped.

After a coordinator restart every host reconnects at once; full jitter (a uniform draw
between 0 and the exponential ceiling) spreads that herd over the whole window
instead of synchronising it into waves.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    base_s: float = 1.0
    cap_s: float = 30.0
    rng: random.Random = field(default_factory=random.SystemRandom)

    def ceiling(self, attempt: int) -> float:
        return float(min(self.cap_s, self.base_s * 2 ** min(attempt, 30)))

    def delay(self, attempt: int) -> float:
        """Seconds to wait before reconnect number `attempt` (0 = first after a drop)."""
        return self.rng.uniform(0, self.ceiling(attempt))
