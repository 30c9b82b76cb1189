"""The public explorer pages. Each page renders bodies built by `api.explorer_views`,
the builders the JSON explorer serves, so a page shows nothing the JSON API does not
(T2); none of them reads a table or an owner-facing schema."""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response

from gpunet.core.errors import NotFound
from gpunet.server.api import explorer_views as views
from gpunet.server.api.deps import ReadSession, State
from gpunet.server.api.paging import page_of
from gpunet.server.explorer import plots
from gpunet.server.explorer.web import Pages
from gpunet.server.services import explorer, incidents, rewards

router = APIRouter(include_in_schema=False)
DEVICE_ID = re.compile(r"dev_[a-z2-7]{16}")
EPOCH = re.compile(r"[0-9]{1,12}")
PLOT_HOURS = 24 * 7
STATUSES = ("pending", "verified", "suspect", "suspended", "retired")


def pages(request: Request) -> Pages:
    p: Pages = request.app.state.explorer_pages
    return p


def not_found(request: Request, what: str) -> Response:
    return pages(request).render(request, "error.html", {"title": "Not found", "message": what},
                                 status=404)


def _hourly(history: Any, now: dt.datetime) -> tuple[list[dt.datetime], dict[dt.datetime, Any]]:
    """A full hourly axis ending at the last completed hour, and the snapshots on it."""
    end = now.replace(minute=0, second=0, microsecond=0) - dt.timedelta(hours=1)
    times = [end - dt.timedelta(hours=h) for h in range(PLOT_HOURS - 1, -1, -1)]
    return times, {p.at: p for p in history.items}


def network_plots(history: Any, now: dt.datetime) -> dict[str, Any]:
    times, at = _hourly(history, now)

    def col(name: str) -> list[float | None]:
        return [getattr(at[t], name) if t in at else None for t in times]

    return {
        "supply": plots.lines(
            "Verified GPUs per hour",
            times,
            [plots.Series("verified", "s1", col("verified")),
             plots.Series("pending", "s2", col("pending"))],
        ),
        "uptime": plots.lines(
            "Verified GPU-hours per hour",
            times,
            [plots.Series("GPU-hours", "s1", col("online_device_hours"))],
        ),
        "proofs": plots.stacked_bars(
            "Proofs per hour",
            times,
            [plots.Series("passed", "s1", col("proofs_passed")),
             plots.Series("failed", "s3", col("proofs_failed")),
             plots.Series("missed", "s2", col("proofs_missed"))],
        ),
        "recorded_hours": len(at),
    }


@router.get("/")
def overview(request: Request, session: ReadSession, st: State) -> Response:
    data = views.overview(session, st)
    history = views.history(session, st, PLOT_HOURS)
    context = {"title": "Network", "o": data, **network_plots(history, st.clock.now())}
    return pages(request).render(request, "overview.html", context)


@router.get("/devices")
def device_list(
    request: Request,
    session: ReadSession,
    status: Annotated[str | None, Query(max_length=16)] = None,
    model: Annotated[str | None, Query(max_length=64)] = None,
    cursor: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    status = status if status in STATUSES else None
    model = model if model and re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9 ._()+/:-]*", model) else None
    cursor = cursor if cursor and DEVICE_ID.fullmatch(cursor) else None
    rows = explorer.list_devices(
        session, status=status, model=model, region=None, limit=51, after=cursor
    )
    page, next_cursor = page_of(rows, 50, lambda d: d.public_id)
    context = {
        "title": "Devices",
        "devices": [views.public_device(d) for d in page],
        "next_cursor": next_cursor,
        "status": status,
        "model": model,
        "statuses": STATUSES,
    }
    return pages(request).render(request, "devices.html", context)


@router.get("/devices/{device_id}")
def device_page(
    request: Request,
    device_id: str,
    session: ReadSession,
    st: State,
    before: Annotated[int | None, Query(ge=1, le=2**40)] = None,
) -> Response:
    if not DEVICE_ID.fullmatch(device_id):
        return not_found(request, "There is no device with this ID.")
    try:
        row = views.device_row(session, device_id)
    except NotFound:
        return not_found(request, "There is no device with this ID.")
    context = {
        "title": f"Device {device_id}",
        "d": views.public_device(row),
        "proofs": views.proofs(session, st, row, limit=50, before=None),
        "epochs": views.device_epochs(session, st, row, before=before, limit=12),
    }
    return pages(request).render(request, "device.html", context)


@router.get("/epochs")
def epoch_list(
    request: Request,
    session: ReadSession,
    before: Annotated[int | None, Query(ge=0, le=2**62)] = None,
) -> Response:
    rows = rewards.listing(session, limit=51, before=before)
    page, next_before = page_of(rows, 50, lambda e: e.epoch)
    context = {
        "title": "Epochs",
        "epochs": [views.epoch_out(e) for e in page],
        "next_before": next_before,
    }
    return pages(request).render(request, "epochs.html", context)


@router.get("/epochs/{epoch}")
def epoch_page(
    request: Request,
    epoch: str,
    session: ReadSession,
    after: Annotated[str | None, Query(max_length=128)] = None,
    wallet: Annotated[str | None, Query(max_length=128)] = None,
) -> Response:
    row = rewards.get(session, int(epoch)) if EPOCH.fullmatch(epoch) else None
    if row is None:
        return not_found(request, "This epoch is not closed (or does not exist).")
    wallet_ok = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*")
    after = after if after and wallet_ok.fullmatch(after) else None
    items = rewards.payouts_page(session, row.epoch, limit=101, after=after)
    page, next_after = page_of(items, 100, lambda item: item[0])
    chosen = None
    if wallet and wallet_ok.fullmatch(wallet):
        paid = rewards.payouts_for(session, row.epoch, [wallet])
        chosen = (wallet, paid[wallet]) if wallet in paid else None
    context = {
        "title": f"Epoch {row.epoch}",
        "e": views.epoch_out(row),
        "payouts": [(w, str(a)) for w, a in page],
        "next_after": next_after,
        "chosen": chosen,
    }
    return pages(request).render(request, "epoch.html", context)


@router.get("/incidents")
def incident_list(request: Request, session: ReadSession) -> Response:
    rows = incidents.public_listing(session, limit=100, before=None)
    context = {"title": "Incidents", "incidents": [views.incident_out(w) for w in rows]}
    return pages(request).render(request, "incidents.html", context)


@router.get("/search")
def search(
    request: Request,
    session: ReadSession,
    q: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    """A device's public ID opens its page, a number opens that epoch; anything else
    says it found nothing (there is nothing else public to find)."""
    text = q.strip()
    if DEVICE_ID.fullmatch(text) and explorer.get_device(session, text) is not None:
        return RedirectResponse(f"/devices/{text}", status_code=303)
    if EPOCH.fullmatch(text) and rewards.get(session, int(text)) is not None:
        return RedirectResponse(f"/epochs/{int(text)}", status_code=303)
    # The query is not echoed back: whatever was typed stays out of the page.
    context = {"title": "Search"}
    return pages(request).render(request, "search.html", context, status=404)
