"""The coordinator's app factory.

Nothing per-request lives in this process that another replica would need: sessions,
nonces, counters, blocks and alerts are all in the database (or Redis), so any number
of replicas behind a load balancer behave as one.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.exc import IntegrityError, OperationalError

from gpunet import __version__
from gpunet.core.clock import Clock, SystemClock
from gpunet.core.errors import GpunetError, RateLimited
from gpunet.core.pog import load_catalog
from gpunet.server.api import accounts, devices, explorer, heartbeat, proofs, rewards, worker
from gpunet.server.api.deps import AppState
from gpunet.server.api.schemas import ErrorOut
from gpunet.server.background.proofs import ProofScheduler
from gpunet.server.background.prune import PruneJob
from gpunet.server.background.rewards import EpochCloser
from gpunet.server.background.uptime import UptimeFlusher
from gpunet.server.db.engine import Database
from gpunet.server.metrics import Metrics
from gpunet.server.middleware import LimitsAndMetrics
from gpunet.server.security.oidc import OidcVerifier
from gpunet.server.security.passwords import Passwords
from gpunet.server.security.secrets import derive_key
from gpunet.server.security.tokens import AccessTokens
from gpunet.server.services.attestation import AttestationVerifier, NoAttestation
from gpunet.server.services.proofs import ProofPolicy
from gpunet.server.services.ratelimit import DatabaseCounters, RedisCounters
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
) -> FastAPI:
    database = database or Database(settings.database_url)
    secret = settings.secret_key.get_secret_value()
    oidc = None
    if settings.oidc_issuer and settings.oidc_jwks_url:
        oidc = OidcVerifier(
            issuer=settings.oidc_issuer,
            jwks_url=settings.oidc_jwks_url,
            audience=settings.oidc_audience,
            cache_s=settings.oidc_jwks_cache_s,
            min_refetch_s=settings.oidc_jwks_min_refetch_s,
        )
    redis_counters = RedisCounters(settings.redis_url) if settings.redis_url else None
    metrics = Metrics()
    catalog = load_catalog(settings.catalog_path)
    reward_config = load_config(settings, catalog)
    state = AppState(
        settings=settings,
        database=database,
        clock=clock or SystemClock(),
        metrics=metrics,
        tokens=AccessTokens(
            derive_key(secret, "access-token"), settings.public_url, settings.access_token_ttl_s
        ),
        passwords=Passwords(
            memory_kib=settings.argon2_memory_kib, time_cost=settings.argon2_time_cost
        ),
        enrollment_key=derive_key(secret, "enrollment-code"),
        oidc=oidc,
        catalog=catalog,
        attestation=attestation or NoAttestation(),
        proof_policy=ProofPolicy.from_settings(settings),
        counters_factory=(lambda _s: redis_counters) if redis_counters else DatabaseCounters,
        uptime=UptimeRecorder(reward_config.schedule.clock),
        rewards=reward_config,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        jobs: list[PruneJob | ProofScheduler | UptimeFlusher | EpochCloser] = []
        if settings.background_jobs:
            jobs = [
                PruneJob(database, state.clock),
                ProofScheduler(
                    database,
                    state.clock,
                    state.catalog,
                    state.proof_policy,
                    tick_s=settings.scheduler_tick_s,
                    rollcall_mean_s=settings.rollcall_mean_s,
                    rollcall_fraction=settings.rollcall_fraction,
                ),
                UptimeFlusher(state.uptime, database, settings.uptime_flush_s),
                EpochCloser(
                    database,
                    reward_config,
                    state.clock,
                    tick_s=settings.rewards_close_tick_s,
                    keep_days=settings.uptime_retention_days,
                ),
            ]
        for job in jobs:
            job.start()
        try:
            yield
        finally:
            for job in jobs:
                job.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="gpunet coordinator",
        version=__version__,
        description="Proves GPUs are real before they count; see docs/.",
    )
    app.state.gpunet = state
    _register_errors(app)
    for module in (accounts, devices, worker, heartbeat, proofs, explorer, rewards):
        app.include_router(module.router, responses=ERROR_RESPONSES)
    app.include_router(rewards.public, responses=ERROR_RESPONSES)

    app.add_middleware(LimitsAndMetrics, metrics=metrics)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> PlainTextResponse:
        return PlainTextResponse(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
