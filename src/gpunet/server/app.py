"""The coordinator's app factory: the one place the app is assembled.

`create_app` takes the settings and any dependency a caller wants to choose (database,
clock, attestation, control channel) and builds everything else from the settings; no
module holds settings, a database or an app as a global. `gpunet server run` and the
tests call it directly; `gpunet.server.asgi` calls it for uvicorn's factory mode.

Nothing per-request lives in this process that another replica would need: sessions,
nonces, counters, blocks and alerts are all in the database (or Redis), so any number
of replicas behind a load balancer behave as one.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from gpunet import __version__
from gpunet.core.clock import Clock, SystemClock
from gpunet.core.errors import Forbidden, GpunetError, RateLimited, Unauthenticated
from gpunet.core.pog import load_catalog
from gpunet.server import explorer as explorer_pages
from gpunet.server.admission import (
    DEMOTIONS_CAPACITY,
    AdmissionGate,
    AnonymousLane,
    Classifier,
    Demotions,
)
from gpunet.server.api import accounts, devices, explorer, heartbeat, proofs, rewards, worker
from gpunet.server.api import clusters as cluster_routes
from gpunet.server.api.deps import AppState
from gpunet.server.api.schemas import ErrorOut
from gpunet.server.background.clusters import cluster_driver
from gpunet.server.background.explorer import history_keeper
from gpunet.server.background.periodic import PeriodicJob
from gpunet.server.background.proofs import proof_scheduler
from gpunet.server.background.prune import pruner
from gpunet.server.background.rewards import epoch_closer
from gpunet.server.background.uptime import uptime_flusher
from gpunet.server.control.server import start_control_server
from gpunet.server.control.settings import ControlSettings
from gpunet.server.db.engine import Database
from gpunet.server.metrics import Metrics
from gpunet.server.middleware import LimitsAndMetrics
from gpunet.server.security.oidc import OidcVerifier
from gpunet.server.security.passwords import Passwords
from gpunet.server.security.secrets import derive_key
from gpunet.server.security.tokens import AccessTokens
from gpunet.server.services.attestation import AttestationVerifier, NoAttestation
from gpunet.server.services.mailer import LogMailer, Mailer, OutboxMailer, SmtpMailer, SmtpRelay
from gpunet.server.services.proofs import ProofPolicy
from gpunet.server.services.ratelimit import Counters, DatabaseCounters, RedisCounters
from gpunet.server.services.reward_config import load_config
from gpunet.server.services.uptime import UptimeRecorder
from gpunet.server.settings import Settings

log = logging.getLogger("gpunet.server")
# Every error, whatever its status, has the one shape `_error` writes: say so in the
# OpenAPI document (FastAPI would otherwise document only a 422 of its own shape).
ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    "4XX": {"model": ErrorOut, "description": "Refused: see error.code"},
    "5XX": {"model": ErrorOut, "description": "Unavailable: retry later"},
}


def _error(
    status: int, code: str, message: str, headers: dict[str, str] | None = None, **extra: object
) -> JSONResponse:
    body: dict[str, object] = {"code": code, "message": message, **extra}
    return JSONResponse({"error": body}, status_code=status, headers=headers)


def _register_errors(app: FastAPI) -> None:
    @app.exception_handler(GpunetError)
    async def _gpunet(_: Request, exc: GpunetError) -> JSONResponse:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        if exc.status == 401:
            headers = {**(headers or {}), "WWW-Authenticate": "Bearer"}
        return _error(exc.status, exc.code, exc.message, headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Say which field and why, but never echo the input back (it may be a secret).
        fields = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))[:200]}
            for e in exc.errors()[:20]
        ]
        return _error(422, "invalid_input", "the request is not valid", fields=fields)

    @app.exception_handler(IntegrityError)
    async def _integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        # Two requests raced for the same unique thing (a GPU UUID, a key, an e-mail).
        return _error(409, "conflict", "this conflicts with an existing record")

    @app.exception_handler(OperationalError)
    async def _busy(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database unavailable: %s", exc.orig)
        return _error(
            503, "unavailable", "the database is busy; retry shortly", {"Retry-After": "1"}
        )


def create_app(
    settings: Settings,
    *,
    database: Database | None = None,
    clock: Clock | None = None,
    attestation: AttestationVerifier | None = None,
    control: ControlSettings | None = None,
) -> FastAPI:
    """The coordinator's HTTP API; with `control` (and `control.enabled`) it also serves
    the agents' control channel, started in the lifespan on uvicorn's event loop."""
    state = build_state(settings, database=database, clock=clock, attestation=attestation)
    app = FastAPI(
        lifespan=_lifespan(state, control),
        title="gpunet coordinator",
        version=__version__,
        description="Proves GPUs are real before they count; see docs/.",
    )
    if control is not None:
        state.control_address = control.advertised(settings.public_url)
    app.state.gpunet = state
    _register_errors(app)
    _include_routers(app)
    explorer_pages.mount(app, state)
    _add_admission(app, state)
    app.add_middleware(
        LimitsAndMetrics,
        metrics=state.metrics,
        path_limits=proofs.body_limits(state),
        hsts=not settings.development,
    )
    _add_probes(app, state.metrics, settings)
    return app


def _add_admission(app: FastAPI, state: AppState) -> None:
    """Added before LimitsAndMetrics, so it runs inside it: what the gate sheds is
    counted and gets the security headers like any other response."""
    s = state.settings
    app.add_middleware(
        AdmissionGate,
        classifier=Classifier(
            tokens=state.tokens,
            clock=state.clock,
            signature_window_s=s.device_signature_window_s,
            oidc=state.oidc,
            metrics_token=s.metrics_token.get_secret_value() if s.metrics_token else None,
        ),
        lane=AnonymousLane(s.admission_anonymous_slots, s.admission_anonymous_queue),
        demotions=Demotions(s.admission_demote_s, capacity=DEMOTIONS_CAPACITY),
        per_principal=s.admission_per_principal,
        trusted_proxies=frozenset(s.trusted_proxies),
    )


def build_state(
    settings: Settings,
    *,
    database: Database | None = None,
    clock: Clock | None = None,
    attestation: AttestationVerifier | None = None,
) -> AppState:
    """Everything the routes, jobs and control channel share, built from the settings."""
    secret = settings.secret_key.get_secret_value()
    catalog = load_catalog(settings.catalog_path)
    reward_config = load_config(settings, catalog)
    return AppState(
        settings=settings,
        database=database or Database(settings.database_url),
        clock=clock or SystemClock(),
        metrics=Metrics(),
        tokens=AccessTokens(
            derive_key(secret, "access-token"), settings.public_url, settings.access_token_ttl_s
        ),
        passwords=Passwords(
            memory_kib=settings.argon2_memory_kib, time_cost=settings.argon2_time_cost
        ),
        enrollment_key=derive_key(secret, "enrollment-code"),
        oidc=_oidc(settings),
        catalog=catalog,
        attestation=attestation or NoAttestation(),
        proof_policy=ProofPolicy.from_settings(settings),
        counters_factory=_counters_factory(settings),
        uptime=UptimeRecorder(reward_config.schedule.clock),
        rewards=reward_config,
        mailer=_mailer(settings),
    )


def _mailer(settings: Settings) -> Mailer:
    # No mail server ships with the coordinator: the operator's relay if one is set;
    # without one, in development unlock tokens land in files a developer can open, and
    # elsewhere only the fact that mail was due is logged.
    if settings.smtp_host:
        password = settings.smtp_password.get_secret_value() if settings.smtp_password else None
        return SmtpMailer(
            SmtpRelay(
                host=settings.smtp_host,
                port=settings.smtp_port,
                security=settings.smtp_security,
                sender=settings.mail_sender,
                username=settings.smtp_username,
                password=password,
                timeout_s=settings.smtp_timeout_s,
            )
        )
    if settings.development:
        return OutboxMailer(settings.data_dir / "outbox")
    return LogMailer()


def _oidc(settings: Settings) -> OidcVerifier | None:
    if not (settings.oidc_issuer and settings.oidc_jwks_url):
        return None
    return OidcVerifier(
        issuer=settings.oidc_issuer,
        jwks_url=settings.oidc_jwks_url,
        audience=settings.oidc_audience,
        cache_s=settings.oidc_jwks_cache_s,
        min_refetch_s=settings.oidc_jwks_min_refetch_s,
    )


def _counters_factory(settings: Settings) -> Callable[[Session], Counters]:
    if not settings.redis_url:
        return DatabaseCounters
    redis_counters = RedisCounters(settings.redis_url)  # one client for the whole process
    return lambda _session: redis_counters


def background_jobs(state: AppState) -> list[PeriodicJob]:
    """This replica's background jobs; every replica runs the same set (each job says
    why that is safe)."""
    s = state.settings
    return [
        pruner(state.database, state.clock),
        proof_scheduler(
            state.database,
            state.clock,
            state.catalog,
            state.proof_policy,
            tick_s=s.scheduler_tick_s,
            rollcall_mean_s=s.rollcall_mean_s,
            rollcall_fraction=s.rollcall_fraction,
        ),
        uptime_flusher(state.uptime, state.database, s.uptime_flush_s),
        epoch_closer(
            state.database,
            state.rewards,
            state.clock,
            tick_s=s.rewards_close_tick_s,
            keep_days=s.uptime_retention_days,
        ),
        history_keeper(state.database, state.catalog, state.rewards, state.clock),
        cluster_driver(state.database, state.clock, state.catalog, state.clusters),
    ]


def _lifespan(
    state: AppState, control: ControlSettings | None
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Made per lifespan, so an app that is started twice (tests) gets fresh threads.
        jobs = background_jobs(state) if state.settings.background_jobs else []
        for job in jobs:
            job.start()
        try:
            async with _control_channel(app, state, control):
                yield
        finally:
            for job in jobs:
                job.stop()

    return lifespan


@asynccontextmanager
async def _control_channel(
    app: FastAPI, state: AppState, control: ControlSettings | None
) -> AsyncIterator[None]:
    """With several uvicorn workers each binds the control port with SO_REUSEPORT and
    the kernel spreads hosts over them; every worker is a replica like any other."""
    if control is None or not control.enabled:
        yield
        return
    server = await start_control_server(
        state, host=control.host, port=control.port, settings=control, reuse_port=True
    )
    app.state.control = server
    try:
        yield
    finally:
        await server.stop()


def _include_routers(app: FastAPI) -> None:
    for module in (accounts, devices, worker, heartbeat, proofs, explorer, rewards, cluster_routes):
        app.include_router(module.router, responses=ERROR_RESPONSES)


def _add_probes(app: FastAPI, metrics: Metrics, settings: Settings) -> None:
    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    token = settings.metrics_token.get_secret_value().encode() if settings.metrics_token else None

    @app.get("/metrics", include_in_schema=False)
    def prometheus(request: Request) -> PlainTextResponse:
        # Traffic by endpoint and caller kind is for operators (settings.metrics_token).
        if token is not None:
            given = request.headers.get("authorization", "").removeprefix("Bearer ").encode()
            if not hmac.compare_digest(given, token):
                raise Unauthenticated("/metrics needs the operators' metrics token")
        elif not settings.metrics_open:
            raise Forbidden("/metrics is closed: set GPUNET_METRICS_TOKEN to scrape it")
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
