"""Owner passwords: argon2id, with a dummy hash so unknown e-mails cost the same time."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class Passwords:
    def __init__(self, *, memory_kib: int = 65536, time_cost: int = 3) -> None:
        self._hasher = PasswordHasher(memory_cost=memory_kib, time_cost=time_cost)
        self._dummy = self._hasher.hash("gpunet-timing-equaliser")

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Constant-shape check: an unknown account still pays for one argon2 verify."""
        try:
            ok = self._hasher.verify(password_hash or self._dummy, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return ok and password_hash is not None
