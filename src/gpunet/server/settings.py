"""Coordinator settings: one object, built once at start-up and passed in, never a global."""

from __future__ import annotations

import enum
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PLACEHOLDER_SECRET = "dev-insecure-change-me"  # noqa: S105 - refused outside development
MIN_METRICS_TOKEN = 32


class Environment(enum.StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class SmtpSecurity(enum.StrEnum):
    STARTTLS = "starttls"  # plain connect, then upgraded (submission, port 587)
    TLS = "tls"  # TLS from the first byte (port 465)
    NONE = "none"  # a relay on a trusted network only


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GPUNET_", env_file=None, extra="ignore")

    # `production` refuses placeholder secrets and never pays development-only profiles.
    environment: Environment = Environment.DEVELOPMENT
    # SQLite (one machine) or `postgresql://user@host/db` (replicas share it).
    database_url: str = "sqlite:///var/gpunet.db"
    # Signs access tokens and tags enrollment codes. Must be long and random in production.
    secret_key: SecretStr = SecretStr(PLACEHOLDER_SECRET)
    # The URL agents enroll with and sign for: the coordinator refuses requests signed
    # for another name, so set it to what agents reach (behind a proxy: the proxy's URL).
    public_url: str = "http://127.0.0.1:8000"

    # Lifetimes: access and refresh tokens, enrollment codes; devices one code may enroll.
    access_token_ttl_s: int = Field(900, ge=60, le=3600)
    refresh_token_ttl_s: int = Field(14 * 86400, ge=3600, le=90 * 86400)
    enrollment_code_ttl_s: int = Field(900, ge=60, le=86400)
    enrollment_max_devices: int = Field(16, ge=1, le=64)
    # Allowed clock skew for signed device requests; nonces are remembered this long.
    device_signature_window_s: int = Field(120, ge=10, le=900)
    # Whether anyone may create an owner account (POST /api/v1/accounts).
    open_registration: bool = True
    # argon2id cost; production refuses less than OWASP's floor of 19 MiB.
    argon2_memory_kib: int = Field(65536, ge=1024, le=4 * 1024 * 1024)
    argon2_time_cost: int = Field(3, ge=1, le=20)

    # External identity provider (OIDC). Tokens are accepted only from this issuer.
    oidc_issuer: str | None = None
    oidc_audience: str | None = None
    oidc_jwks_url: str | None = None
    oidc_jwks_cache_s: int = Field(300, ge=0, le=86400)
    oidc_jwks_min_refetch_s: float = Field(5.0, ge=0, le=3600)
    # Sign-in on the explorer's pages through the provider (authorization code + PKCE,
    # docs/explorer.md): its authorize and token endpoints and this coordinator's client.
    # The redirect URI to register is GPUNET_PUBLIC_URL/account/oidc/callback.
    oidc_client_id: str | None = None
    oidc_client_secret: SecretStr | None = None
    oidc_authorize_url: str | None = None
    oidc_token_url: str | None = None

    # Rate limits: (count per window) for writes by one principal and by one address.
    rate_window_s: int = Field(60, ge=1, le=3600)
    principal_writes_per_window: int = Field(120, ge=1)
    address_writes_per_window: int = Field(600, ge=1)
    address_enrollments_per_window: int = Field(30, ge=1)
    address_logins_per_window: int = Field(30, ge=1)
    # Keep the rate-limit counters in this Redis (shared by replicas) instead of the database.
    redis_url: str | None = None

    # Admission control (docs/operations.md), per worker process: requests without a
    # credential checkable from headers alone (anonymous) share this many places in the
    # app, entering one per turn of the event loop, so owners and devices come first.
    admission_anonymous_slots: int = Field(8, ge=1, le=10_000)
    # Admission control: anonymous requests that may wait for a place; the next one is
    # shed (503 with Retry-After) without entering the app.
    admission_anonymous_queue: int = Field(16, ge=1, le=100_000)
    # Admission control: requests one owner or device may have in flight ahead of the
    # anonymous; more wait in the anonymous lane.
    admission_per_principal: int = Field(8, ge=1, le=10_000)
    # Admission control: a device signature or identity-provider token refused with 401
    # sends its address (IPv6: its /64) to the anonymous lane for this long.
    admission_demote_s: int = Field(300, ge=1, le=86_400)

    # Per-account sign-in throttle (docs/accounts.md): wrong passwords for one account,
    # from any address, before an address the owner never used waits 2, 4, 8 ... s.
    login_backoff_after: int = Field(5, ge=1, le=1000)
    # Per-account sign-in throttle: the longest such wait.
    login_backoff_max_s: int = Field(900, ge=1, le=86400)
    # Per-account sign-in throttle: wrong passwords that lock the account and e-mail its
    # owner a one-time unlock token.
    login_lockout_after: int = Field(20, ge=2, le=10_000)
    # Per-account sign-in throttle: how long a locked account makes unknown addresses wait.
    login_lockout_s: int = Field(3600, ge=1, le=7 * 86400)
    # Per-account sign-in throttle: how long the e-mailed unlock token stays valid.
    login_unlock_ttl_s: int = Field(86400, ge=300, le=30 * 86400)
    # Per-account sign-in throttle: an address (IPv6: its /64) that signed in with the
    # right password stays known, and never waits, this many days.
    login_known_address_days: int = Field(180, ge=1, le=3650)

    # Mail to owners (a locked account's unlock token) through this SMTP relay. Unset:
    # development writes each mail under GPUNET_DATA_DIR/outbox, elsewhere it is only
    # logged, never sent (docs/operations.md).
    smtp_host: str | None = None
    # Mail: the relay's port (587 for starttls, 465 for tls).
    smtp_port: int = Field(587, ge=1, le=65535)
    # Mail: `starttls` (submission, port 587), `tls` (implicit TLS, port 465) or `none`
    # (a relay on a trusted network; refused with a password outside development).
    smtp_security: SmtpSecurity = SmtpSecurity.STARTTLS
    # Mail: the relay's login, if it asks for one.
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    # Mail: how long to wait on the relay (mail is sent off the request's thread).
    smtp_timeout_s: float = Field(10.0, gt=0, le=120)
    # Mail: the From address (default: gpunet@ the public URL's host).
    mail_from: str | None = None

    # Write-surge detection: alert when one principal or the whole network writes more
    # than this many device/account changes within one rate window.
    surge_principal_writes: int = Field(60, ge=1)
    surge_global_writes: int = Field(5000, ge=1)
    # Alerts are also POSTed (JSON) to this URL as they are raised.
    alert_webhook_url: str | None = None

    # /metrics (docs/operations.md): when set, only `Authorization: Bearer <token>` reads it.
    metrics_token: SecretStr | None = None
    # Without a token, whether anyone may read /metrics (403 otherwise). Unset: open in
    # development only, so a production coordinator shows its traffic to no one by default.
    metrics_public: bool | None = None

    # Proof of GPU: the catalog of models and budgets (a JSON file; unset = the one
    # shipped, gpunet/core/pog/catalog.json).
    catalog_path: Path | None = None
    # A challenge's clock starts at issue; its deadline is issue + budget + this slack
    # for the push in flight. It is free time for a cheater too, so it is one network
    # round trip, far below every profile's 20% budget margin (~0.25-0.8 s).
    delivery_allowance_s: float = Field(0.25, ge=0, le=30)
    # Mean time between a device's unannounced spot checks (exponential gaps).
    spot_check_mean_s: float = Field(6 * 3600, ge=10, le=30 * 86400)
    # Wait before re-checking a device that failed a proof (doubling per failure, to 64x).
    retry_after_failure_s: float = Field(60, ge=1, le=86400)
    # A device that let a challenge lapse is challenged again (alone) this often.
    reissue_interval_s: float = Field(600, ge=1, le=86400)
    # Spot checks and cohort co-challenges reach one device at most once per this gap.
    min_challenge_gap_s: float = Field(900, ge=0, le=86400)
    # Mean time between network-wide roll-calls (random, unannounced), and the share of
    # the network each one challenges at the same moment.
    rollcall_mean_s: float = Field(24 * 3600, ge=60)
    rollcall_fraction: float = Field(1.0, gt=0, le=1)
    # How often the proof scheduler looks for devices due a challenge.
    scheduler_tick_s: float = Field(5.0, gt=0, le=600)

    # Verified uptime and rewards (docs/rewards.md). The emission schedule is public data:
    # None = the packaged gpunet/core/rewards/schedule.json. Epoch and slot lengths, when
    # set, override the schedule's own (the published schedule shows the values in force).
    rewards_schedule_path: Path | None = None
    rewards_epoch_seconds: int | None = Field(None, ge=10, le=7 * 86400)
    rewards_slot_seconds: int | None = Field(None, ge=1, le=3600)
    # Heartbeats are buffered per replica and flushed this often: the most a crash loses.
    uptime_flush_s: float = Field(10.0, gt=0, le=300)
    # An epoch closes this long after it ends (>= the flush interval, so every replica's
    # last bits are in); the closer job looks for due epochs this often.
    rewards_settle_s: float = Field(120.0, ge=0, le=86400)
    rewards_close_tick_s: float = Field(30.0, gt=0, le=3600)
    # An epoch closes only after a roll-call started after its end has resolved, so it
    # never pays uptime that roll-call forfeits. None: on in production, off in
    # development (where no roll-call may be scheduled for a day).
    rewards_await_rollcall: bool | None = None
    # The weight of `dev_only` catalog profiles (cpu-dev) in development, so a local
    # network can show an epoch that pays; production never pays them whatever this says.
    dev_reward_weight: float = Field(0.0, ge=0, le=100)
    # Incident windows (T6, docs/rewards.md) credit a device verified and online in one of
    # the last this many slots before the window, for at most this many of its slots.
    incident_lookback_slots: int = Field(5, ge=1, le=10_000)
    incident_max_credit_slots: int = Field(360, ge=0, le=100_000)
    # Uptime rows of closed epochs older than this are pruned.
    uptime_retention_days: int = Field(90, ge=1, le=3650)

    # Prune expired nonces and counters in the background (every replica may do it).
    background_jobs: bool = True
    # Proxies (addresses) whose X-Forwarded-For is believed for the caller's address.
    trusted_proxies: list[str] = Field(default_factory=list)
    # Where the coordinator keeps local files (the development mail outbox).
    data_dir: Path = Path("var")

    @model_validator(mode="after")
    def _refuse_placeholders(self) -> Settings:
        if self.environment is Environment.PRODUCTION:
            secret = self.secret_key.get_secret_value()
            if secret == PLACEHOLDER_SECRET or len(secret) < 32:
                raise ValueError(
                    "GPUNET_SECRET_KEY must be set to a random value of at least 32 characters "
                    "outside development (e.g. `python -c 'import secrets; "
                    "print(secrets.token_urlsafe(48))'`)"
                )
        self._refuse_weak_operator_settings()
        if self.environment is Environment.PRODUCTION and self.argon2_memory_kib < 19456:
            raise ValueError("GPUNET_ARGON2_MEMORY_KIB must be at least 19456 in production")
        if self.rewards_settle_s < self.uptime_flush_s:
            raise ValueError("GPUNET_REWARDS_SETTLE_S must be at least GPUNET_UPTIME_FLUSH_S")
        if self.login_lockout_after <= self.login_backoff_after:
            raise ValueError("GPUNET_LOGIN_LOCKOUT_AFTER must exceed GPUNET_LOGIN_BACKOFF_AFTER")
        if bool(self.oidc_issuer) != bool(self.oidc_jwks_url):
            raise ValueError("GPUNET_OIDC_ISSUER and GPUNET_OIDC_JWKS_URL go together")
        web = (self.oidc_client_id, self.oidc_authorize_url, self.oidc_token_url)
        if any(web) and not (all(web) and self.oidc_issuer):
            raise ValueError(
                "GPUNET_OIDC_CLIENT_ID, _AUTHORIZE_URL and _TOKEN_URL go together, with "
                "GPUNET_OIDC_ISSUER"
            )
        return self

    def _refuse_weak_operator_settings(self) -> None:
        if self.development:
            return
        token = self.metrics_token.get_secret_value() if self.metrics_token else None
        if token is not None and len(token) < MIN_METRICS_TOKEN:
            # Anyone who guesses it reads traffic per endpoint and caller kind.
            raise ValueError(
                f"GPUNET_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN} characters "
                "outside development (e.g. `python -c 'import secrets; "
                "print(secrets.token_urlsafe(32))'`)"
            )
        if self.smtp_host and self.smtp_security is SmtpSecurity.NONE and self.smtp_password:
            raise ValueError(
                "GPUNET_SMTP_SECURITY=none would send GPUNET_SMTP_PASSWORD in the clear: "
                "use starttls or tls outside development"
            )

    @property
    def mail_sender(self) -> str:
        if self.mail_from:
            return self.mail_from
        return f"gpunet@{urlsplit(self.public_url).hostname or 'localhost'}"

    @property
    def development(self) -> bool:
        return self.environment is Environment.DEVELOPMENT

    @property
    def await_rollcall(self) -> bool:
        if self.rewards_await_rollcall is None:
            return not self.development
        return self.rewards_await_rollcall

    @property
    def metrics_open(self) -> bool:
        if self.metrics_public is None:
            return self.development
        return self.metrics_public

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")
