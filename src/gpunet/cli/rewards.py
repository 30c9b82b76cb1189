"""`gpunet rewards`: close epochs, show them, and check a payout offline.

`verify` needs no database and no trust in the coordinator beyond the root you compare
with: it recomputes the Merkle path of your (epoch, wallet, amount) leaf.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from gpunet.cli.common import friendly_errors, load_settings, open_database


def _config(settings: Any) -> Any:
    from gpunet.core.pog import load_catalog
    from gpunet.server.services.reward_config import load_config

    return load_config(settings, load_catalog(settings.catalog_path))


def _summary(row: Any) -> dict[str, Any]:
    return {
        "epoch": row.epoch,
        "starts_at": row.starts_at.isoformat(),
        "ends_at": row.ends_at.isoformat(),
        "emission": str(row.emission),
        "paid": str(row.paid),
        "unallocated": str(row.unallocated),
        "root": row.root,
        "wallets": row.wallets,
        "devices": row.devices,
        "counted_slots": row.counted_slots,
        "incidents": row.incidents,
        "schedule_sha256": row.schedule_sha256,
        "closed_at": row.closed_at.isoformat(),
    }


@click.group()
def rewards() -> None:
    """Epochs, payouts and their proofs."""


@rewards.command()
@click.option("--epoch", type=click.IntRange(0), help="close this epoch")
@click.option("--all-due", is_flag=True, help="close every epoch that is due")
@friendly_errors
def close(epoch: int | None, all_due: bool) -> None:
    """Close an epoch (idempotent: an epoch already closed is shown, not paid again)."""
    from gpunet.core.clock import SystemClock
    from gpunet.server.services import rewards as svc

    if (epoch is None) == (not all_due):
        raise click.UsageError("give either --epoch N or --all-due")
    settings = load_settings()
    db = open_database(settings)
    config = _config(settings)
    _same_schedule(db, config)
    now = SystemClock().now()
    if epoch is not None:
        done = [svc.close_epoch(db, config, epoch, now=now)]
    else:
        done = svc.close_due(db, config, now=now)
    for c in done:
        verb = "closed" if c.created else "already closed"
        click.echo(f"epoch {c.row.epoch} {verb}: paid {c.row.paid} of {c.row.emission} to "
                   f"{c.row.wallets} wallets, root {c.row.root}")
    if not done:
        click.echo("no epoch is due")


def _same_schedule(db: Any, config: Any) -> None:
    """Refuse to close under another schedule than the network's: settings that differ
    from the coordinator's (say, GPUNET_REWARDS_EPOCH_SECONDS unset here) would write an
    epoch of the wrong length beside the real ones. The last closed epoch records the
    digest of the schedule it was closed under."""
    from gpunet.server.services import rewards as svc

    with db.read() as session:
        last = svc.listing(session, limit=1, before=None)
    if last and last[0].schedule_sha256 != config.schedule_sha256:
        raise click.ClickException(
            f"these settings' reward schedule (sha256 {config.schedule_sha256[:12]}..., epochs "
            f"of {config.published['epoch_seconds']} s) is not the one epoch {last[0].epoch} was "
            f"closed under (sha256 {last[0].schedule_sha256[:12]}...): run this with the "
            "coordinator's settings (its --config file or GPUNET_REWARDS_* variables)"
        )


@rewards.command()
@click.argument("epoch", type=click.IntRange(0))
@click.option("--payouts", "with_payouts", is_flag=True, help="list every wallet's amount")
@friendly_errors
def show(epoch: int, with_payouts: bool) -> None:
    """Print a closed epoch as JSON."""
    from gpunet.server.services import rewards as svc

    db = open_database(load_settings())
    with db.read() as session:
        row = svc.get(session, epoch)
        if row is None:
            click.echo(f"epoch {epoch} is not closed", err=True)
            sys.exit(1)
        out = _summary(row)
        if with_payouts:
            paid = svc.all_payouts(session, epoch)
            out["payouts"] = {w: str(paid[w]) for w in sorted(paid)}
    click.echo(json.dumps(out, indent=2))


def _unwrap(text: str) -> str:
    """The explorer wraps the proof with the root it publishes ({"root", "proof"}); a bare
    proof is fine too. The root to check against stays the one given on the command line."""
    try:
        data = json.loads(text)
    except ValueError:
        return text  # PayoutProof.from_json says what is wrong
    return json.dumps(data["proof"] if isinstance(data, dict) and "proof" in data else data)


def _fetch(url: str) -> str:
    import httpx

    r = httpx.get(url, timeout=30, follow_redirects=False)
    if r.status_code != 200:
        raise click.ClickException(f"{url}: HTTP {r.status_code}")
    return r.text


@rewards.command()
@click.option("--root", required=True, help="the published root (64 hex characters)")
@click.option("--epoch", required=True, type=click.IntRange(0))
@click.option("--wallet", required=True)
@click.option("--amount", required=True, help="amount in base units (an integer)")
@click.option("--proof", "proof_file", type=click.File("r"), help="proof JSON file, or - for stdin")
@click.option("--from-url", help="fetch the proof from an explorer URL instead")
def verify(
    root: str, epoch: int, wallet: str, amount: str, proof_file: Any, from_url: str | None
) -> None:
    """Check a payout against a published root, offline. Exit 0 if it holds, 1 if not."""
    from gpunet.core.errors import InvalidInput
    from gpunet.core.rewards import PayoutProof, verify_payout

    if (proof_file is None) == (from_url is None):
        raise click.UsageError("give either --proof FILE (or -) or --from-url URL")
    if not amount.isdigit():
        raise click.BadParameter("the amount is an integer in base units", param_hint="--amount")
    text = _unwrap(_fetch(from_url) if from_url else proof_file.read())
    try:
        proof = PayoutProof.from_json(text)
    except InvalidInput as exc:
        raise click.ClickException(f"not a payout proof: {exc.message}") from exc
    if verify_payout(root.lower(), epoch, wallet, int(amount), proof):
        click.echo(f"OK: {wallet} was paid {amount} in epoch {epoch} under root {root.lower()}")
        return
    click.echo(f"FAILED: this proof does not show {wallet} paid {amount} in epoch {epoch} "
               f"under root {root.lower()}", err=True)
    sys.exit(1)
