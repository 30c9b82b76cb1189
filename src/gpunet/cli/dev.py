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
# Where the development owner is paid: set on the account so its devices' uptime pays.
DEV_WALLET = "dev-wallet-local"

# Short epochs, a development-only weight for cpu-dev and quick heartbeats: a newcomer
# sees devices verified and an epoch closed and paid within a few minutes. Each one is a
# default only; the environment (or a config file) wins. Production ignores the weight.
DEV_SETTINGS = {
    "GPUNET_SCHEDULER_TICK_S": "1",
    "GPUNET_SPOT_CHECK_MEAN_S": "300",
    "GPUNET_DEV_REWARD_WEIGHT": "1",
    "GPUNET_REWARDS_EPOCH_SECONDS": "60",
    "GPUNET_REWARDS_SLOT_SECONDS": "5",
    "GPUNET_UPTIME_FLUSH_S": "2",
    "GPUNET_REWARDS_SETTLE_S": "3",
    "GPUNET_REWARDS_CLOSE_TICK_S": "2",
    "GPUNET_CONTROL_HEARTBEAT_S": "2",
}


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
        token = str(r.json()["access_token"])
        r = c.patch(
            "/api/v1/account",
            json={"wallet_address": DEV_WALLET},
            headers={"Authorization": f"Bearer {token}"},
        )
        if r.status_code != 200:
            raise click.ClickException(f"cannot set the development wallet: {r.text}")
        return password, token


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


def dev_environment(root: Path, port: int) -> dict[str, str]:
    """The environment every process of the local network runs with."""
    env = {**os.environ}
    env.setdefault("GPUNET_DATABASE_URL", f"sqlite:///{root}/gpunet.db")
    # Device keys sign the coordinator's name: it must call itself what agents enrolled with.
    env.setdefault("GPUNET_PUBLIC_URL", f"http://127.0.0.1:{port}")
    env.setdefault("GPUNET_CONTROL_PORT", str(port + 1))
    for name, value in DEV_SETTINGS.items():
        env.setdefault(name, value)
    return env


class _Network:
    """The coordinator and agents this command started, stopped in reverse order."""

    def __init__(self, root: Path, port: int) -> None:
        self.root = root
        self.url = f"http://127.0.0.1:{port}"
        self.port = port
        self.exe = str(Path(sys.executable).parent / "gpunet")
        self.env = dev_environment(root, port)
        self.children: list[subprocess.Popen[bytes]] = []

    def start_coordinator(self) -> None:
        subprocess.run([self.exe, "server", "migrate"], env=self.env, check=True)
        log = open(self.root / "coordinator.log", "ab")  # noqa: SIM115 - lives as long as the child
        self.children.append(
            subprocess.Popen(
                [self.exe, "server", "run", "--port", str(self.port)],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        _wait_healthy(self.url)

    def start_agent(self, home: Path, extra: list[str], token: str) -> None:
        agent_env = {**self.env, "GPUNET_HOME": str(home)}
        subprocess.run(
            [self.exe, "worker", "enroll", "--code", _code(self.url, token, 16),
             "--coordinator", self.url, *extra],
            env=agent_env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        agent_log = open(home / "agent.log", "ab")  # noqa: SIM115
        # No --control: the agent uses the control address the coordinator gave at enrollment.
        self.children.append(
            subprocess.Popen(
                [self.exe, "worker", "run"], env=agent_env, stdout=agent_log,
                stderr=subprocess.STDOUT,
            )
        )

    def coordinator_alive(self) -> bool:
        return bool(self.children) and self.children[0].poll() is None

    def stop(self) -> None:
        for child in reversed(self.children):
            if child.poll() is None:
                child.send_signal(signal.SIGINT)
        for child in self.children:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()


def _agent_homes(root: Path, agents: int) -> list[tuple[Path, list[str]]]:
    from gpunet.agent.discovery import auto_discover

    found = auto_discover(allow_cpu_dev=False)
    if found.ok:
        click.echo(f"found {len(found.gpus)} GPU(s): one agent for them")
        return [(root / "agent-0", [])]
    click.echo(
        f"no GPU found here: starting {agents} cpu-dev agents "
        "(the development profile: paid here so you can follow a payout, never in production)"
    )
    return [(root / f"agent-{i}", ["--cpu-dev", "1"]) for i in range(agents)]


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
    root = Path(state).resolve()
    root.mkdir(parents=True, exist_ok=True)
    net = _Network(root, port)
    try:
        net.start_coordinator()
        password, token = _dev_owner(net.url, root)
        for home, extra in _agent_homes(root, agents):
            net.start_agent(home, extra, token)
        url = net.url
        click.echo(f"\ngpunet is running at {url}  (API explorer: {url}/docs; "
                   f"network: {url}/api/v1/explorer/stats)")
        click.echo(f"explorer: {url}/  (sign in at {url}/account to see your own devices)")
        click.echo(f"development owner: {DEV_EMAIL} / {password}, paid to wallet {DEV_WALLET}")
        click.echo(f"epochs of {net.env['GPUNET_REWARDS_EPOCH_SECONDS']} s: the first payout "
                   "appears within a few minutes, with the command that verifies it")
        operators = _operator_config(root, net.env)
        click.echo(f"operator commands (gpunet admin ..., gpunet rewards ...) see this network "
                   f"with: export GPUNET_CONFIG={operators}")
        click.echo(f"logs: {root}/coordinator.log, {root}/agent-*/agent.log; Ctrl-C to stop\n")
        signal.signal(signal.SIGTERM, _interrupt)
        _watch(net)
    except KeyboardInterrupt:
        click.echo("\nstopping...")
    finally:
        net.stop()


def _operator_config(root: Path, env: dict[str, str]) -> Path:
    """Write the settings this network runs with as a config file (cli.config), so that
    operator commands run anywhere use its database and its epoch lengths, not their own
    defaults (which would refuse to close its epochs, or find no database)."""
    from sqlalchemy.engine import make_url

    from gpunet.cli.config import write_config
    from gpunet.server.settings import Settings

    values = {
        name[len("GPUNET_"):].lower(): value
        for name, value in env.items()
        if name.startswith("GPUNET_") and name[len("GPUNET_"):].lower() in Settings.model_fields
    }
    url = make_url(values["database_url"])
    if url.get_backend_name() == "sqlite" and url.database and not Path(url.database).is_absolute():
        # `make run` names the database relative to the checkout; the file is read anywhere.
        values["database_url"] = str(url.set(database=str(Path(url.database).resolve())))
    path = root / "coordinator.toml"
    write_config(path, values)
    return path


def _watch(net: _Network) -> None:
    """Print the network's state as it changes, and each epoch that paid the dev wallet
    with the one command that checks that payout against the published root."""
    last = ""
    paid_seen: set[int] = set()
    while net.coordinator_alive():
        summary = _summary(net.url)
        if summary != last:
            click.echo(summary)
            last = summary
        for line in _new_payouts(net.url, paid_seen):
            click.echo(line)
        time.sleep(2)
    raise click.ClickException("the coordinator stopped; see coordinator.log")


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


def verify_command(url: str, epoch: int, root: str, amount: str) -> str:
    """The one command a newcomer runs to check the dev wallet's payout in `epoch`."""
    return (
        f"gpunet rewards verify --root {root} --epoch {epoch} --wallet {DEV_WALLET} "
        f"--amount {amount} --from-url {url}/api/v1/explorer/epochs/{epoch}/proofs/{DEV_WALLET}"
    )


def _new_payouts(url: str, seen: set[int]) -> list[str]:
    """Lines for closed epochs not reported yet: what they paid, and for the dev wallet's
    share the verify command."""
    import httpx

    try:
        items = httpx.get(f"{url}/api/v1/explorer/epochs", timeout=2.0).json()["items"]
    except (httpx.HTTPError, ValueError, KeyError):
        return []
    lines: list[str] = []
    for e in sorted(items, key=lambda e: int(e["epoch"])):
        if e["epoch"] in seen:
            continue
        seen.add(e["epoch"])
        lines.append(f"epoch {e['epoch']} closed: paid {e['paid']} of {e['emission']} to "
                     f"{e['wallets']} wallet(s), root {e['root']}")
        try:
            r = httpx.get(f"{url}/api/v1/explorer/epochs/{e['epoch']}/proofs/{DEV_WALLET}",
                          timeout=2.0)
        except httpx.HTTPError:
            continue
        if r.status_code == 200:
            amount = r.json()["proof"]["amount"]
            lines.append(f"  {DEV_WALLET} was paid {amount}; check it yourself:\n  "
                         + verify_command(url, int(e["epoch"]), e["root"], amount))
    return lines
