"""Cluster settings, from GPUNET_CLUSTER_* variables (apart from the HTTP settings, as
the control channel's are, so that clusters can be tuned on their own)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ClusterSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GPUNET_CLUSTER_", env_file=None, extra="ignore")

    # Customers' clusters (docs/clusters.md): a cluster not ready this long after its
    # request has failed and its devices are released.
    build_timeout_s: float = Field(300.0, ge=5, le=3600)
    # A command delivered to an agent without an answer for this long is delivered again
    # (longer than an agent's `ray start` may take: 120 s).
    command_timeout_s: float = Field(150.0, ge=1, le=3600)
    # A device is online for placement when its heartbeat was heard this recently.
    online_window_s: float = Field(150.0, ge=1, le=86400)
    # A node whose agent left its control session is lost after this long without a
    # heartbeat (keep it above 30 s plus the uptime flush: how often one is written).
    lost_after_s: float = Field(60.0, ge=0.5, le=3600)
    # The longest cluster a customer may ask for, and how many clusters one may hold.
    max_duration_s: int = Field(7 * 86400, ge=60, le=366 * 86400)
    max_active_per_owner: int = Field(16, ge=1, le=10_000)
    # How often the driver moves every cluster towards what it should be.
    tick_s: float = Field(1.0, gt=0, le=60)
