"""Keyset pagination: fetch `limit + 1` rows, serve `limit`, and the extra row's presence
says whether there is a next page (whose cursor is the last served row's key)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
C = TypeVar("C")


def page_of(rows: Sequence[T], limit: int, key: Callable[[T], C]) -> tuple[Sequence[T], C | None]:
    page = rows[:limit]
    return page, (key(page[-1]) if len(rows) > limit else None)
