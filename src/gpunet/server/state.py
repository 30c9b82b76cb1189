"""What the coordinator's routes, jobs and control channel share, built once per app.

It lives apart from the HTTP layer so that the control channel and the background jobs
can take it without importing a router or a request dependency (the import contract
forbids `server.control` to import `server.api`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property

from sqlalchemy.orm import Session

from gpunet.core.clock import Clock
from gpunet.core.pog import Catalog
from gpunet.core.pog.wire import max_body
from gpunet.server.db.engine import Database
from gpunet.server.metrics import Metrics
from gpunet.server.security.oidc import OidcVerifier
from gpunet.server.security.passwords import Passwords
from gpunet.server.security.tokens import AccessTokens
from gpunet.server.services import ratelimit
from gpunet.server.services.attestation import AttestationVerifier
from gpunet.server.services.clusters.settings import ClusterSettings
from gpunet.server.services.clusters.tokens import TokenBox
from gpunet.server.services.mailer import LogMailer, Mailer
from gpunet.server.services.proofs import ProofPolicy
from gpunet.server.services.reward_config import RewardConfig
from gpunet.server.services.uptime import UptimeRecorder
from gpunet.server.settings import Settings


@dataclass
class AppState:
    """Everything the routes share; built once by the app factory."""

    settings: Settings
    database: Database
    clock: Clock
    metrics: Metrics
    tokens: AccessTokens
    passwords: Passwords
    enrollment_key: bytes
    oidc: OidcVerifier | None
    counters_factory: Callable[[Session], ratelimit.Counters]
    catalog: Catalog
    attestation: AttestationVerifier
    proof_policy: ProofPolicy
    uptime: UptimeRecorder  # this replica's heartbeat buffer (services.uptime)
    rewards: RewardConfig  # schedule, incident policy and weights in force
    # Mail to owners (unlock tokens); the app factory picks one, tests swap in a fake.
    mailer: Mailer = field(default_factory=LogMailer)
    # The control channel's HOST:PORT as agents should dial it (told at enrollment).
    control_address: str | None = None
    # Customers' clusters (GPUNET_CLUSTER_*); tests pass their own.
    clusters: ClusterSettings = field(default_factory=ClusterSettings)

    @cached_property
    def cluster_tokens(self) -> TokenBox:
        """Seals and opens clusters' Ray tokens (services.clusters.tokens)."""
        return TokenBox(self.settings.secret_key.get_secret_value())

    @cached_property
    def openings_limit(self) -> int:
        """The largest opening response any challenge of this catalog can need, in bytes.

        Both transports take openings up to this size and no more: it follows the
        catalog (megabytes at the real profiles), where every other body stays small.
        """
        return max(max_body(model.params) for model in self.catalog.models)
