"""What a service needs to know about the call it serves, in one value."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy.orm import Session

from gpunet.server.security.principal import Principal
from gpunet.server.services.ratelimit import Counters, DatabaseCounters
from gpunet.server.settings import Settings


@dataclass(slots=True)
class Ctx:
    session: Session
    settings: Settings
    now: dt.datetime
    actor: Principal
    address: str | None = None
    counters: Counters | None = None

    @property
    def limits(self) -> Counters:
        return self.counters or DatabaseCounters(self.session)
