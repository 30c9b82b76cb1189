"""Who is calling. Every authorization decision starts from one of these."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class Scope(enum.StrEnum):
    ACCOUNT = "account"  # read and change one's own account and sessions
    DEVICES_READ = "devices:read"
    DEVICES_WRITE = "devices:write"  # owner-editable device fields, retire a device
    ENROLL = "enroll"  # create enrollment codes
    CLUSTERS_READ = "clusters:read"  # see one's own clusters
    CLUSTERS_WRITE = "clusters:write"  # ask for and end clusters; read their Ray token


ALL_SCOPES = frozenset(Scope)


class PrincipalKind(enum.StrEnum):
    OWNER = "owner"
    DEVICE = "device"
    ADMIN = "admin"  # the operator's CLI, never reachable over HTTP
    SYSTEM = "system"


@dataclass(frozen=True, slots=True)
class Principal:
    kind: PrincipalKind
    id: str  # owner: internal owner id; device: device public id; admin: operator name
    owner_id: int | None = None
    device_id: int | None = None
    scopes: frozenset[Scope] = field(default_factory=frozenset)
    session_id: str | None = None

    @property
    def key(self) -> str:
        """The name rate limits, blocks and the audit log use for this principal."""
        return f"{self.kind.value}:{self.id}"

    @classmethod
    def admin(cls, name: str = "operator") -> Principal:
        return cls(PrincipalKind.ADMIN, name)

    @classmethod
    def system(cls, name: str = "coordinator") -> Principal:
        return cls(PrincipalKind.SYSTEM, name)
