"""Reconnect backoff: exponential ceiling, full jitter, capped."""

import random

from gpunet.agent.control import Backoff


def test_backoff_grows_to_the_cap_with_full_jitter() -> None:
    b = Backoff(base_s=1.0, cap_s=30.0, rng=random.Random(1))
    assert [b.ceiling(a) for a in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert b.ceiling(10_000) == 30
    draws = [b.delay(3) for _ in range(2000)]
    assert all(0 <= d <= 8 for d in draws)
    assert min(draws) < 0.5 and max(draws) > 7.5  # spread over the whole window
