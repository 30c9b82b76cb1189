"""An exact amount of base units, up to 78 decimal digits, on either backend.

PostgreSQL keeps it as NUMERIC(78, 0). SQLite has no exact type for that range: its
NUMERIC affinity turns an integer above 2**63 into a lossy REAL, so there the value is
kept as its decimal string. Python sees an `int` either way; a float is never involved.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import Numeric, String
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

MAX_DIGITS = 78  # 10**78 > 2**256


class Amount(TypeDecorator[int]):
    impl = Numeric(MAX_DIGITS, 0)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(MAX_DIGITS))
        return dialect.type_descriptor(Numeric(MAX_DIGITS, 0))

    def process_bind_param(self, value: int | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if type(value) is not int or value < 0 or len(str(value)) > MAX_DIGITS:
            raise ValueError("an amount is a non-negative integer of at most 78 digits")
        return str(value) if dialect.name == "sqlite" else Decimal(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> int | None:
        if value is None:
            return None
        if isinstance(value, Decimal):
            if value != value.to_integral_value():
                raise ValueError("stored amount is not an integer")
            return int(value)
        return int(str(value))
