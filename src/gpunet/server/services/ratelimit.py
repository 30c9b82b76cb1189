"""Fixed-window counters shared by every replica: in the database, or Redis if set.

A counter is (key, window start). Windows are aligned to the epoch, so all replicas
agree on which window a request falls in without talking to each other.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Collection
from typing import Protocol

from sqlalchemy import delete, text
from sqlalchemy.orm import Session

from gpunet.core.errors import RateLimited
from gpunet.server.db.tables import RateCounter

# One IPv6 subscriber is routinely handed a whole /64 (SLAAC, privacy addresses), so
# one attacker can rotate through 2^64 addresses at no cost: per-address limits and
# "has this address signed in before" both count the /64 as one address.
IPV6_PREFIX = 64


def address_key(address: str | None) -> str | None:
    """The address as limits count it: an IPv4 address, or the /64 an IPv6 one is in.

    An IPv4-mapped IPv6 address (::ffff:a.b.c.d, from dual-stack listeners) counts as
    its IPv4 address. Anything that is not an IP address (a test client's name, a
    Unix socket peer) is its own key, unchanged.
    """
    if address is None:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def forwarded_address(peer: str | None, forwarded_for: str, trusted: Collection[str]) -> str | None:
    """The caller's address: the peer's, or behind a trusted proxy the last hop it added
    to X-Forwarded-For (earlier hops are whatever the client wrote)."""
    if peer and peer in trusted:
        hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        if hops:
            return hops[-1][:64]
    return peer


def window_start(now: dt.datetime, window_s: int) -> int:
    t = int(now.timestamp())
    return t - t % window_s


class Counters(Protocol):
    def hit(self, key: str, now: dt.datetime, window_s: int, amount: int = 1) -> int:
        """Add to the key's counter in the current window; return the new count."""
        ...


# One statement that both SQLite (3.35+) and PostgreSQL run as written: counters sit on
# hot paths (every write, every enrollment attempt), so no ORM construction per call.
_HIT = text(
    "INSERT INTO rate_counters (key, window_start, count) VALUES (:key, :start, :amount) "
    "ON CONFLICT (key, window_start) DO UPDATE SET count = rate_counters.count + :amount "
    "RETURNING count"
)


class DatabaseCounters:
    """Counters in the `rate_counters` table, inside the caller's transaction."""

    def __init__(self, session: Session) -> None:
        self._session = session

    def hit(self, key: str, now: dt.datetime, window_s: int, amount: int = 1) -> int:
        params = {"key": key, "start": window_start(now, window_s), "amount": amount}
        return int(self._session.execute(_HIT, params).scalar_one())


class RedisCounters:
    def __init__(self, url: str) -> None:
        import redis

        self._redis = redis.Redis.from_url(url)

    def hit(self, key: str, now: dt.datetime, window_s: int, amount: int = 1) -> int:
        name = f"gpunet:rl:{key}:{window_start(now, window_s)}"
        pipe = self._redis.pipeline()
        pipe.incrby(name, amount)
        pipe.expire(name, window_s * 2)
        count, _ = pipe.execute()
        return int(count)


def enforce(counters: Counters, key: str, limit: int, now: dt.datetime, window_s: int) -> int:
    count = counters.hit(key, now, window_s)
    if count > limit:
        retry = window_s - (int(now.timestamp()) % window_s)
        raise RateLimited(f"too many requests for {key.split(':', 1)[0]}", retry_after=retry)
    return count


def prune(session: Session, now: dt.datetime, keep_s: int = 3600) -> int:
    cutoff = int(now.timestamp()) - keep_s
    result = session.execute(delete(RateCounter).where(RateCounter.window_start < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)
