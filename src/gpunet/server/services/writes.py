"""Every successful change is counted here: per-principal limits and surge detection (T5).

In the incident this design answers, a surge of metadata writes at 1 a.m. was the only
sign of the attack, and a person had to notice it. Here the counters that enforce the
limits also raise an alert by themselves the moment a principal, or the network as a
whole, crosses its surge threshold within one window.
"""

from __future__ import annotations

from gpunet.core.errors import RateLimited
from gpunet.server.context import Ctx
from gpunet.server.services import alerts
from gpunet.server.services.ratelimit import window_start


def record_write(ctx: Ctx, endpoint: str) -> None:
    s = ctx.settings
    key = ctx.actor.key
    count = ctx.limits.hit(f"writes:{key}", ctx.now, s.rate_window_s)
    if count > s.principal_writes_per_window:
        raise RateLimited("too many changes from this principal", retry_after=s.rate_window_s)
    window = window_start(ctx.now, s.rate_window_s)
    if count > s.surge_principal_writes:
        alerts.raise_alert(
            ctx.session,
            kind="write_surge",
            dedupe_key=f"surge:{key}:{window}",
            message=f"write surge from {key}: more than {s.surge_principal_writes} changes "
            f"within {s.rate_window_s}s",
            details={
                "principal": key,
                "endpoint": endpoint,
                "count": count,
                "window_start": window,
                "address": ctx.address,
            },
            now=ctx.now,
        )
    total = ctx.limits.hit("writes:all", ctx.now, s.rate_window_s)
    if total > s.surge_global_writes:
        alerts.raise_alert(
            ctx.session,
            kind="write_surge_global",
            dedupe_key=f"surge:all:{window}",
            message=f"network-wide write surge: more than {s.surge_global_writes} changes "
            f"within {s.rate_window_s}s",
            details={"count": total, "window_start": window},
            now=ctx.now,
            severity="critical",
        )
