"""`gpunet admin incident`: declare and list incident windows (T6).

Declaring is audited and public (the explorer lists windows). Devices verified and
online just before a window are credited for it at the epoch close; see docs/rewards.md.
"""

from __future__ import annotations

import datetime as dt
import json

import click

from gpunet.cli.common import friendly_errors, load_settings, open_database


def parse_time(text: str) -> dt.datetime:
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r} is not an ISO 8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


@click.group()
def incident() -> None:
    """Incident windows: outages that must not cost honest suppliers their rewards."""


@incident.command()
@click.option("--from", "start", required=True, help="ISO time the outage began (UTC if no zone)")
@click.option("--to", "end", required=True, help="ISO time it ended (exclusive)")
@click.option("--reason", required=True, help="public, 1..200 printable ASCII characters")
@friendly_errors
def declare(start: str, end: str, reason: str) -> None:
    """Declare [FROM, TO) an incident window."""
    from gpunet.cli.admin import operator
    from gpunet.cli.rewards import _config
    from gpunet.core.clock import SystemClock
    from gpunet.server.services import incidents

    settings = load_settings()
    db = open_database(settings)
    clock = _config(settings).schedule.clock
    starts_at, ends_at = parse_time(start), parse_time(end)
    with db.transaction() as session:
        row = incidents.declare(
            session, starts_at=starts_at, ends_at=ends_at, reason=reason, actor=operator(),
            now=SystemClock().now(),
        )
        closed = incidents.closed_epochs_overlapping(session, clock, starts_at, ends_at)
        click.echo(f"incident {row.id}: {row.starts_at.isoformat()} .. {row.ends_at.isoformat()}"
                   f" ({row.reason})")
    if closed:
        click.echo(f"warning: epochs {', '.join(map(str, closed))} are already closed and final;"
                   " this window credits only epochs closed from now on", err=True)


@incident.command("list")
@click.option("--json", "as_json", is_flag=True)
def list_incidents(as_json: bool) -> None:
    """Declared windows, latest first."""
    from gpunet.server.services import incidents

    db = open_database(load_settings())
    with db.read() as session:
        items = [
            {"id": w.id, "from": w.starts_at.isoformat(), "to": w.ends_at.isoformat(),
             "reason": w.reason, "declared_at": w.declared_at.isoformat(),
             "declared_by": w.declared_by}
            for w in incidents.listing(session)
        ]
    if as_json:
        click.echo(json.dumps(items, indent=2))
        return
    for w in items:
        click.echo(f"{w['id']}\t{w['from']}\t{w['to']}\t{w['reason']}")
    if not items:
        click.echo("no incident windows")
