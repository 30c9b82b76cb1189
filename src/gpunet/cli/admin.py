"""`gpunet admin`: the operator's tools. Local only; never exposed over HTTP."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import re
from typing import Any

import click

from gpunet.cli.common import friendly_errors, load_settings, open_database

_DURATION = re.compile(r"^(\d+)([smhd])$")


def parse_since(text: str, now: dt.datetime) -> dt.datetime:
    """An ISO time (UTC if no zone) or a duration back from now: 30m, 2h, 1d."""
    m = _DURATION.match(text)
    if m:
        seconds = int(m[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m[2]]
        return now - dt.timedelta(seconds=seconds)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise click.BadParameter("use an ISO time or a duration like 30m, 2h, 1d") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def operator() -> Any:
    from gpunet.server.security.principal import Principal

    return Principal.admin(f"cli:{getpass.getuser()}")


@click.group()
def admin() -> None:
    """Operator tools: audit, revert, alerts, blocks, account unlock."""


@admin.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Recompute the whole chain; exit 1 if any record was altered or removed."""
    from gpunet.server.services.audit import verify_chain

    db = open_database(load_settings())
    with db.read() as session:
        report = verify_chain(session)
    if report.ok:
        click.echo(f"audit chain intact: {report.records} records")
        return
    where = f" at record {report.first_bad_id}" if report.first_bad_id else ""
    click.echo(
        f"AUDIT CHAIN BROKEN{where}: {report.reason} ({report.records} records verified before it)",
        err=True,
    )
    raise SystemExit(1)


def resolve_actor(session: Any, text: str) -> Any:
    from sqlalchemy import select

    from gpunet.server.db.tables import Device, Owner
    from gpunet.server.security.principal import Principal, PrincipalKind

    if "@" in text and not text.startswith(("owner:", "device:")):
        owner = session.execute(
            select(Owner).where(Owner.email == text.lower())
        ).scalar_one_or_none()
        if owner is None:
            raise click.BadParameter(f"no account with e-mail {text}")
        return Principal(PrincipalKind.OWNER, str(owner.id), owner_id=owner.id)
    kind, _, ident = text.partition(":")
    if kind == "owner" and ident.isdigit():
        return Principal(PrincipalKind.OWNER, ident, owner_id=int(ident))
    if kind == "device" and ident:
        device = session.execute(
            select(Device).where(Device.public_id == ident)
        ).scalar_one_or_none()
        if device is None:
            raise click.BadParameter(f"no device {ident}")
        return Principal(PrincipalKind.DEVICE, ident, owner_id=device.owner_id, device_id=device.id)
    raise click.BadParameter("an actor is an e-mail, owner:<id> or device:<public id>")


@admin.command()
@click.option("--actor", required=True, help="e-mail, owner:<id> or device:<public id>")
@click.option("--since", required=True, help="ISO time or duration (30m, 2h, 1d)")
@click.option("--dry-run", is_flag=True, help="show what would be restored, change nothing")
@friendly_errors
def revert(actor: str, since: str, dry_run: bool) -> None:
    """Restore everything ACTOR changed since SINCE (skipping fields changed again later)."""
    from gpunet.core.clock import SystemClock
    from gpunet.server.services.revert import revert as do_revert

    db = open_database(load_settings())
    now = SystemClock().now()
    with db.transaction() as session:
        target = resolve_actor(session, actor)
        report = do_revert(
            session,
            target=target,
            since=parse_since(since, now),
            operator=operator(),
            now=now,
            dry_run=dry_run,
        )
    verb = "would restore" if dry_run else "restored"
    for line in report.restored:
        click.echo(f"{verb}: {line}")
    for public_id in report.suspended:
        click.echo(f"{'would suspend' if dry_run else 'suspended'} enrolled device {public_id}")
    for line in report.skipped:
        click.echo(f"skipped: {line}")
    if not (report.restored or report.suspended or report.skipped):
        click.echo(f"{target.key} changed nothing since then")


@admin.command()
@click.option("--all", "show_all", is_flag=True, help="include acknowledged alerts")
@click.option("--ack", type=int, help="acknowledge alert ID")
@click.option("--json", "as_json", is_flag=True)
@friendly_errors
def alerts(show_all: bool, ack: int | None, as_json: bool) -> None:
    """List open alerts (newest first), or acknowledge one."""
    from gpunet.core.clock import SystemClock
    from gpunet.server.services import alerts as svc

    db = open_database(load_settings())
    if ack is not None:
        with db.transaction() as session:
            svc.acknowledge(session, ack, SystemClock().now())
        click.echo(f"acknowledged alert {ack}")
        return
    with db.read() as session:
        rows = svc.recent(session, include_acknowledged=show_all)
        items = [
            {
                "id": a.id,
                "at": a.created_at.isoformat(),
                "kind": a.kind,
                "severity": a.severity,
                "message": a.message,
                "acknowledged": a.acknowledged_at is not None,
            }
            for a in rows
        ]
    if as_json:
        click.echo(json.dumps(items, indent=2))
    elif not items:
        click.echo("no open alerts")
    for a in [] if as_json else items:
        click.echo(f"#{a['id']} {a['at']} [{a['severity']}] {a['kind']}: {a['message']}")


@admin.command()
@click.argument("kind", type=click.Choice(["address", "network", "principal"]))
@click.argument("value")
@click.option("--reason", required=True)
@friendly_errors
def block(kind: str, value: str, reason: str) -> None:
    """Block one address, one network range (/16 or narrower) or one principal."""
    from gpunet.core.clock import SystemClock
    from gpunet.server.services import blocks

    db = open_database(load_settings())
    with db.transaction() as session:
        row = blocks.add(
            session,
            kind=blocks.BlockKind(kind),
            value=value,
            reason=reason,
            actor=operator(),
            now=SystemClock().now(),
        )
        click.echo(f"block {row.id}: {row.kind} {row.value} ({row.reason})")


@admin.command()
@click.argument("block_id", type=int)
@friendly_errors
def unblock(block_id: int) -> None:
    """Lift block BLOCK_ID."""
    from gpunet.core.clock import SystemClock
    from gpunet.server.services import blocks

    db = open_database(load_settings())
    with db.transaction() as session:
        row = blocks.lift(session, block_id=block_id, actor=operator(), now=SystemClock().now())
        click.echo(f"lifted block {row.id}: {row.kind} {row.value}")


@admin.command()
@click.argument("account")
@friendly_errors
def unlock(account: str) -> None:
    """Clear ACCOUNT's failed sign-ins and lock-out (an e-mail or owner:<id>)."""
    from gpunet.core.clock import SystemClock
    from gpunet.server.db.tables import Owner
    from gpunet.server.services import login_throttle

    db = open_database(load_settings())
    with db.transaction() as session:
        target = resolve_actor(session, account)
        if target.kind.value != "owner" or session.get(Owner, target.owner_id) is None:
            raise click.BadParameter(f"no account {account}")
        cleared = login_throttle.unlock_by_operator(
            session, target.owner_id, operator(), SystemClock().now()
        )
    if cleared:
        click.echo(f"unlocked {target.key}: failed sign-ins cleared")
    else:
        click.echo(f"{target.key} had no failed sign-ins to clear")


@admin.command("blocks")
def list_blocks() -> None:
    """List active blocks."""
    from gpunet.server.services import blocks

    db = open_database(load_settings())
    with db.read() as session:
        rows = blocks.active(session)
        for b in rows:
            click.echo(f"{b.id}\t{b.kind}\t{b.value}\t{b.created_at:%Y-%m-%d %H:%M}\t{b.reason}")
        if not rows:
            click.echo("no active blocks")


@admin.command()
@click.option(
    "--fraction",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="share of verified devices to challenge at once",
)
def rollcall(fraction: float) -> None:
    """Challenge a random sample of the whole network in one instant."""
    from gpunet.core.clock import SystemClock
    from gpunet.core.pog import load_catalog
    from gpunet.server.services import proof_schedule
    from gpunet.server.services.proofs import ProofPolicy

    settings = load_settings()
    db = open_database(settings)
    policy = ProofPolicy.from_settings(settings)
    with db.transaction() as session:
        n = proof_schedule.rollcall(
            session,
            fraction=fraction,
            now=SystemClock().now(),
            catalog=load_catalog(settings.catalog_path),
            policy=policy,
        )
    click.echo(f"roll-call: {n} devices challenged")
