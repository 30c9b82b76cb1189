"""Control-channel settings, from GPUNET_CONTROL_* variables (kept apart from the HTTP
settings so the channel can be tuned or switched off on its own)."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlsplit

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from gpunet import __version__
from gpunet.core.control import MAX_FRAME, UpgradePolicy


class ControlSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GPUNET_CONTROL_", env_file=None, extra="ignore")

    # The agents' control channel (TCP): on or off, and where it listens; agents learn
    # where to dial at enrollment (`public_address`), `gpunet worker run --control` overrides.
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(8001, ge=0, le=65535)
    # What agents sign as the coordinator's name; default: the coordinator's public URL.
    server_id: str | None = Field(None, min_length=1, max_length=255)
    # HOST:PORT agents are told to dial at enrollment (behind NAT or TLS termination the
    # bound address is not it); default: the public URL's host and this port.
    public_address: str | None = Field(None, min_length=3, max_length=255)
    # How often agents send a heartbeat (the coordinator tells them at each session).
    heartbeat_s: float = Field(60.0, ge=0.01, le=3600)
    # A session with no frame for this many heartbeat intervals is closed.
    idle_heartbeats: float = Field(3.5, ge=1.5, le=100)
    # How often the coordinator looks for new challenges to push to connected agents.
    push_interval_s: float = Field(0.5, gt=0, le=60)
    # How often statuses changed elsewhere are read back (uptime counts verified only).
    status_refresh_s: float = Field(15.0, gt=0, le=3600)
    # A connection that has not authenticated a device within this long is closed.
    auth_timeout_s: float = Field(10.0, gt=0, le=120)
    # The largest frame (bytes) a peer may send; a larger one closes the session.
    max_frame: int = Field(MAX_FRAME, ge=4096, le=16 * MAX_FRAME)
    # A peer that does not read what it is sent is cut off once this much is queued.
    max_write_buffer: int = Field(4 * MAX_FRAME, ge=65536)
    # Agent upgrades: the newest version (older agents hear "upgrade available"), the
    # oldest still served, and the date after which older ones are refused.
    agent_latest: str = __version__
    agent_minimum: str | None = None
    agent_required_by: dt.datetime | None = None

    def advertised(self, public_url: str) -> str | None:
        """Where agents reach this channel, or None when it is off."""
        if not self.enabled:
            return None
        if self.public_address:
            return self.public_address
        host = urlsplit(public_url).hostname or "127.0.0.1"
        return f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}"

    def upgrade_policy(self) -> UpgradePolicy:
        return UpgradePolicy(self.agent_latest, self.agent_minimum, self.agent_required_by)
