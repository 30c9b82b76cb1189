"""The span of time the project can represent, for every time that comes from outside.

Python's datetime ends at years 1 and 9999, and converting an aware datetime to UTC
near either end overflows (``0001-01-01T00:00:00+14:00`` is in year 0 in UTC); an
epoch index times its length can land past both. Every time a request carries is
checked against this span first, so nothing later has to guard arithmetic on it. The
span is generous (nothing the network does predates 1970 or reaches 9000) and leaves
room on both sides for the look-backs and look-aheads the rules add (days, not years).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator

EARLIEST = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
LATEST = dt.datetime(9000, 1, 1, tzinfo=dt.UTC)
EARLIEST_TS = int(EARLIEST.timestamp())
LATEST_TS = int(LATEST.timestamp())


def in_span(value: dt.datetime) -> dt.datetime:
    """`value` in UTC (naive means UTC), or ValueError when outside the span.

    A ValueError is what pydantic turns into a 422 naming the field."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    try:
        utc = value.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError("the time is out of range") from None
    if not EARLIEST <= utc < LATEST:
        raise ValueError(f"the time must lie in [{EARLIEST.isoformat()}, {LATEST.isoformat()})")
    return utc


# A datetime from a request: aware, in UTC, and inside the span.
SaneDatetime = Annotated[dt.datetime, AfterValidator(in_span)]
