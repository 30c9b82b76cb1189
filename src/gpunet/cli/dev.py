"""`gpunet dev up`: a whole local network in one command (what `make run` starts).

The coordinator on its embedded default (SQLite), a development owner account, and
local agents for the GPUs this machine has (or cpu-dev agents when it has none), each
enrolled with a one-time code and proven through the real protocol.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import click

DEV_EMAIL = "dev@example.com"


def _wait_healthy(url: str, timeout_s: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise click.ClickException(f"the coordinator did not come up at {url}")


def _dev_owner(url: str, state: Path) -> tuple[str, str]:
    """Log in as the development owner, creating it (with a random password) once."""
    import httpx

    secret_file = state / "dev-owner-password"
    if secret_file.exists():
        password = secret_file.read_text().strip()
    else:
        password = secrets.token_urlsafe(12)
        state.mkdir(parents=True, exist_ok=True)
        secret_file.write_text(password)
        secret_file.chmod(0o600)
    with httpx.Client(base_url=url, timeout=10.0) as c:
        c.post("/api/v1/accounts", json={"email": DEV_EMAIL, "password": password})
        r = c.post("/api/v1/auth/token", json={"email": DEV_EMAIL, "password": password})
        if r.status_code != 200:
            raise click.ClickException(f"cannot sign in as {DEV_EMAIL}: {r.text}")
        return password, str(r.json()["access_token"])


def _code(url: str, token: str, max_devices: int) -> str:
    import httpx

    r = httpx.post(
        f"{url}/api/v1/enrollment-codes",
        json={"max_devices": max_devices},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
    )
    if r.status_code != 201:
        raise click.ClickException(f"cannot make an enrollment code: {r.text}")
    return str(r.json()["code"])


@click.group()
def dev() -> None:
    """Local development network."""


@dev.command()
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--agents",
    default=3,
    show_default=True,
    type=click.IntRange(1, 16),
    help="cpu-dev agents to start when this machine has no GPU",
)
@click.option(
    "--state",
    default="var",
    show_default=True,
    type=click.Path(file_okay=False),
    help="where the database, agent homes and logs live",
)
def up(port: int, agents: int, state: str) -> None:
    """Start the coordinator and local agents; Ctrl-C stops them all."""
    from gpunet.agent.discovery import auto_discover

    root = Path(state).resolve()
    root.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{port}"
    exe = str(Path(sys.executable).parent / "gpunet")
    env = {**os.environ}
    env.setdefault("GPUNET_DATABASE_URL", f"sqlite:///{root}/gpunet.db")
    # Device keys sign the coordinator's name: it must call itself what agents enrolled with.
    env.setdefault("GPUNET_PUBLIC_URL", url)
    env.setdefault("GPUNET_CONTROL_PORT", str(port + 1))
    env.setdefault("GPUNET_SCHEDULER_TICK_S", "1")
    env.setdefault("GPUNET_SPOT_CHECK_MEAN_S", "300")
    children: list[subprocess.Popen[bytes]] = []

    def stop(*_: object) -> None:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()

    subprocess.run([exe, "server", "migrate"], env=env, check=True)
    log = open(root / "coordinator.log", "ab")  # noqa: SIM115 - lives as long as the child
    children.append(
        subprocess.Popen(
            [exe, "server", "run", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    )
    try:
        _wait_healthy(url)
        password, token = _dev_owner(url, root)
        found = auto_discover(allow_cpu_dev=False)
        homes: list[tuple[Path, list[str]]] = []
        if found.ok:
            homes.append((root / "agent-0", []))
            click.echo(f"found {len(found.gpus)} GPU(s): one agent for them")
        else:
            click.echo(
                f"no GPU found here: starting {agents} cpu-dev agents "
                "(the development profile; never reward-eligible in production)"
            )
            homes += [(root / f"agent-{i}", ["--cpu-dev", "1"]) for i in range(agents)]
        for home, extra in homes:
            agent_env = {**env, "GPUNET_HOME": str(home)}
            code = _code(url, token, 16)
            subprocess.run(
                [exe, "worker", "enroll", "--code", code, "--coordinator", url, *extra],
                env=agent_env,
                check=True,
                stdout=subprocess.DEVNULL,
            )
            agent_log = open(home / "agent.log", "ab")  # noqa: SIM115
            children.append(
                subprocess.Popen(
                    [exe, "worker", "run", "--control", f"127.0.0.1:{port + 1}"],
                    env=agent_env,
                    stdout=agent_log,
                    stderr=subprocess.STDOUT,
                )
            )
        click.echo(f"\ngpunet is running at {url}  (explorer API: {url}/api/v1/explorer/stats)")
        click.echo(f"development owner: {DEV_EMAIL} / {password}")
        click.echo(f"logs: {root}/coordinator.log, {root}/agent-*/agent.log; Ctrl-C to stop\n")
        signal.signal(signal.SIGTERM, _interrupt)
        last = ""
        while all(c.poll() is None for c in children[:1]):
            summary = _summary(url)
            if summary != last:
                click.echo(summary)
                last = summary
            time.sleep(2)
        raise click.ClickException("the coordinator stopped; see coordinator.log")
    except KeyboardInterrupt:
        click.echo("\nstopping...")
    finally:
        stop()


def _interrupt(*_: object) -> None:
    """SIGTERM stops the network the same way Ctrl-C does."""
    raise KeyboardInterrupt


def _summary(url: str) -> str:
    import httpx

    try:
        stats = httpx.get(f"{url}/api/v1/explorer/stats", timeout=2.0).json()
    except (httpx.HTTPError, ValueError):
        return "coordinator not answering"
    by = stats["devices_by_status"]
    return (
        f"devices: {by['verified']} verified, {by['pending']} pending, "
        f"{by['suspect']} suspect, {by['suspended']} suspended"
    )
