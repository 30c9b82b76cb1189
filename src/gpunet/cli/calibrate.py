"""`gpunet calibrate`: measure the prover on this machine for a catalog model."""

from __future__ import annotations

import json

import click


@click.command()
@click.argument("profile")
@click.option(
    "--backend",
    type=click.Choice(["cpu", "cuda", "mps", "torch-cpu"]),
    help="default: the profile's own backend",
)
@click.option("--repeats", default=3, show_default=True, type=click.IntRange(1, 20))
@click.option("--json", "as_json", is_flag=True, help="print the whole result as JSON")
def calibrate(profile: str, backend: str | None, repeats: int, as_json: bool) -> None:
    """Time PROFILE's challenge with the same prover the agent runs, and suggest a budget.

    The printed `budget` block is what an operator puts into the catalog for that model
    (marked calibrated, with this device and date as its source).
    """
    from gpunet.agent.provers import ProverError
    from gpunet.agent.provers.calibrate import calibrate as run
    from gpunet.core.pog import default_catalog

    if default_catalog().get(profile) is None:
        keys = ", ".join(m.key for m in default_catalog().models)
        raise click.BadParameter(f"unknown profile {profile!r}; catalog models: {keys}")
    click.echo(f"calibrating {profile} ({repeats} runs)...", err=True)
    try:
        result = run(profile, backend, repeats=repeats)
    except (ProverError, ImportError, RuntimeError) as exc:
        raise click.ClickException(f"cannot run the prover here: {exc}") from exc
    if as_json:
        click.echo(result.model_dump_json(indent=2))
        return
    if not result.self_test_passed:
        raise click.ClickException(
            "self-test FAILED: this backend does not reproduce the "
            "reference results exactly; do not use its figures"
        )
    click.echo(f"device        {result.device} ({result.backend})")
    click.echo(f"commit        {result.commit_s:.3f} s (median of {len(result.runs_s)})")
    click.echo(f"open          {result.open_s:.3f} s")
    click.echo(
        f"throughput    {result.achieved_tops:.2f} int8 TOPS achieved, "
        f"{result.plain_gemm_tops:.2f} plain GEMM -> efficiency {result.efficiency:.2f}"
    )
    click.echo("budget        " + json.dumps(result.catalog_budget()))
