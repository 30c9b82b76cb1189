"""README.md, followed step by step on a fresh `make run` network (issue 12).

`gpunet dev up` (what `make run` starts) brings up the coordinator and an agent as
separate processes. Then every command of README's suppliers' and operators' sections
runs as a process, as written there: the commands are read from README.md itself, and
only the values a reader fills in are substituted (the coordinator's URL, the code just
made, a device id, an epoch). A command the walk does not know fails the test, and so
does a known step the README no longer names: the README and the behaviour cannot drift
apart unnoticed. The walk ends at a verified device and a payout checked with the
`gpunet rewards verify` command the network prints.

Where the README leaves a choice to the reader, the walk takes the one a newcomer on a
machine without a GPU is led to: `worker enroll` answers with a hint naming `--cpu-dev
1`, and the walk follows the hint; `calibrate` times this machine's own profile.
"""

from __future__ import annotations

import functools
import os
import queue
import re
import shlex
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from gpunet.cli.dev import DEV_EMAIL, DEV_WALLET
from tests.e2e.test_network_processes import GPUNET, wait_for

README = Path(__file__).resolve().parents[2] / "README.md"
CPU_DEV_HINT = "add `--cpu-dev 1`"


def two_free_ports() -> int:
    """A port P with P+1 free too (dev up puts the control channel on P+1)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
            try:
                with socket.socket() as b:
                    b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no two consecutive free ports")


def readme_commands(section: str) -> list[list[str]]:
    """The commands of the first `sh` block under `## <section>`, comments dropped, a
    line with `;` split in two. Optional flags in brackets are taken, except `--ack ID`
    (acknowledging an alert needs an alert)."""
    text = README.read_text()
    start = text.index(f"\n## {section}")
    block = text[start:].split("```sh\n", 1)[1].split("```", 1)[0]
    commands: list[list[str]] = []
    for line in block.splitlines():
        line = re.sub(r"\[(--[\w-]+)\]", r"\1", line.replace("[--ack ID]", ""))
        words: list[str] = []
        for word in [*shlex.split(line, comments=True), ";"]:
            if word == ";":
                if words:
                    commands.append(words)
                words = []
            else:
                words.append(word)
    return commands


def command_key(argv: list[str]) -> tuple[str, ...]:
    """`gpunet admin block address 203.0.113.7 ...` -> ("admin", "block", "address")."""
    key: list[str] = []
    for word in argv[1:4]:
        if not re.fullmatch(r"[a-z][a-z-]*", word):
            break
        key.append(word)
    return (argv[0], *key) if argv[0] != "gpunet" else tuple(key)


@dataclass
class Network:
    """`gpunet dev up` and what it has printed."""

    proc: subprocess.Popen[str]
    url: str
    state: Path
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    seen: list[str] = field(default_factory=list)

    def wait_line(self, what: str, match: Callable[[str], bool], timeout: float) -> str:
        for line in self.seen:
            if match(line):
                return line
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, "dev up stopped:\n" + "\n".join(self.seen)
                continue
            self.seen.append(line)
            if match(line):
                return line
        raise AssertionError(f"dev up never printed {what}:\n" + "\n".join(self.seen))


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[Network]:
    port = two_free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUNET_")}
    # Shorter epochs than dev up's own minute, only so the first payout comes sooner.
    env.update(GPUNET_REWARDS_EPOCH_SECONDS="12", GPUNET_REWARDS_SLOT_SECONDS="1")
    state = tmp_path / "var"
    proc = subprocess.Popen(
        [GPUNET, "dev", "up", "--port", str(port), "--agents", "1", "--state", str(state)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    net = Network(proc, f"http://127.0.0.1:{port}", state)

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            net.lines.put(line.rstrip("\n"))

    threading.Thread(target=pump, daemon=True).start()
    yield net
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


class Walk:
    """A newcomer at the keyboard: a supplier on this machine, then the operator."""

    def __init__(self, net: Network, tmp_path: Path) -> None:
        self.net = net
        self.tmp = tmp_path
        owner = net.wait_line("the development owner",
                              lambda x: x.startswith("development owner: "), 60)
        self.email, self.password = owner.removeprefix("development owner: ").split(
            ",")[0].split(" / ")
        assert self.email == DEV_EMAIL
        config = net.wait_line("the operators' config", lambda x: "export GPUNET_CONFIG=" in x, 5)
        self.operator_config = config.split("export GPUNET_CONFIG=", 1)[1].strip()
        self.home = tmp_path / "supplier"
        self.code = ""
        self.device_id = ""
        self.block_id = ""
        self.epoch = ""
        self.agent: subprocess.Popen[bytes] | None = None
        self.done: list[tuple[str, ...]] = []

    # -- running a command as a process ----------------------------------------------
    def env(self, operator: bool = False) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GPUNET_")}
        env["XDG_CONFIG_HOME"] = str(self.tmp / "xdg")
        if operator:
            env["GPUNET_CONFIG"] = self.operator_config
        else:
            env["GPUNET_HOME"] = str(self.home)
        return env

    def run(self, argv: list[str], *, operator: bool = False, stdin: str | None = None,
            ok: bool = True) -> subprocess.CompletedProcess[str]:
        # Operators run from anywhere: not from the network's directory.
        cwd = self.tmp if operator else self.net.state.parent
        done = subprocess.run(
            [GPUNET, *argv[1:]], env=self.env(operator), cwd=cwd, input=stdin or "",
            capture_output=True, text=True, timeout=120, start_new_session=True,
        )
        if ok:
            assert done.returncode == 0, (argv, done.stdout + done.stderr)
        return done

    def fill_in(self, argv: list[str]) -> list[str]:
        """The values a reader puts in place of the README's examples."""
        out: list[str] = []
        for i, word in enumerate(argv):
            before = argv[i - 1] if i else ""
            if word == "https://coordinator.example":
                word = self.net.url
            elif before == "--code":
                word = self.code
            elif word == "DEVICE_ID":
                word = self.device_id
            elif word == "ID" and before == "unblock":
                word = self.block_id
            elif word == "EPOCH":
                word = self.epoch
            elif word in ("owner@example.com", "owner:42"):  # an actor may be an e-mail
                word = self.email
            elif before == "calibrate":
                word = "cpu-dev"  # this machine's profile: it has no h100-sxm
            out.append(word)
        return out

    # -- the steps, by command ----------------------------------------------------------
    def pip(self, argv: list[str]) -> None:
        assert argv[1] == "install"  # this checkout is installed already (make venv)

    def login(self, argv: list[str]) -> None:
        done = self.run(argv, stdin=f"{self.email}\n{self.password}\n")
        assert f"logged in to {self.net.url} as {self.email}" in done.stdout

    def codes_create(self, argv: list[str]) -> None:
        self.code = self.run(argv).stdout.splitlines()[0]
        assert self.code.startswith("gpn-enr-")

    def worker_enroll(self, argv: list[str]) -> None:
        if "--replace" in argv:  # a lost keystore: the agent stops, its keys are gone
            self.stop_agent()
            shutil.rmtree(self.home / "keys")
            self.codes_create(["gpunet", "codes", "create"])
            argv = self.fill_in(argv)
        first = self.run(argv, ok=False)
        if first.returncode != 0:  # no GPU here: the error names the flag to add (and
            # the code is still unused: nothing was sent)
            assert CPU_DEV_HINT in first.stderr, first.stdout + first.stderr
            first = self.run([*argv, "--cpu-dev", "1"])
        enrolled = re.findall(r"enrolled \S+ as (dev_\w+)", first.stdout)
        assert len(enrolled) == 1, first.stdout
        if "--replace" in argv:
            listed = self.run(["gpunet", "devices", "list"]).stdout
            assert re.search(rf"{self.device_id}\s+retired", listed), listed
            assert re.search(rf"{enrolled[0]}\s+pending", listed), listed
        self.device_id = enrolled[0]

    def worker_run(self, argv: list[str]) -> None:
        log = open(self.home / "agent.log", "ab")  # noqa: SIM115 - lives with the child
        self.agent = subprocess.Popen([GPUNET, *argv[1:]], env=self.env(), stdout=log,
                                      stderr=subprocess.STDOUT)

    def stop_agent(self) -> None:
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGINT)
            self.agent.wait(timeout=20)

    def worker_status(self, argv: list[str]) -> None:
        def verified() -> bool:
            out = self.run(argv).stdout
            return f"{self.device_id}  verified" in out and "last heartbeat=never" not in out

        wait_for("the supplier's device verified, its heartbeats received", verified, 90)

    def worker_rotate_key(self, argv: list[str]) -> None:
        assert f"{self.device_id}: new key in use" in self.run(argv).stdout
        # The running agent follows: the device still speaks, still verified.
        self.worker_status(["gpunet", "worker", "status"])

    def calibrate(self, argv: list[str]) -> None:
        assert "budget" in self.run(argv).stdout

    def devices_list(self, argv: list[str]) -> None:
        assert re.search(rf"{self.device_id}\s+verified", self.run(argv).stdout)

    def operate(self, argv: list[str], expect: str) -> str:
        """An operator command, run elsewhere with the network's config file."""
        out = self.run(argv, operator=True).stdout
        assert re.search(expect, out), (argv, out)
        return out

    # -- the walk -------------------------------------------------------------------------
    def suppliers(self) -> None:
        steps: dict[tuple[str, ...], Callable[[list[str]], None]] = {
            ("pip", "install"): self.pip,
            ("login",): self.login,
            ("codes", "create"): self.codes_create,
            ("worker", "enroll"): self.worker_enroll,
            ("worker", "run"): self.worker_run,
            ("worker", "status"): self.worker_status,
            ("worker", "rotate-key"): self.worker_rotate_key,
            ("calibrate",): self.calibrate,
            ("devices", "list"): self.devices_list,
        }
        self.follow("Suppliers", steps)

    def operators(self) -> None:
        def block(argv: list[str]) -> None:
            self.block_id = re.findall(r"^block (\d+):", self.operate(argv, r"^block \d+: "),
                                       re.M)[0]

        expect = {
            ("admin", "audit", "verify"): r"audit chain intact",
            ("admin", "revert"): r"would restore|changed nothing",
            ("admin", "alerts"): r"",
            ("admin", "unblock"): r"lifted block",
            ("admin", "blocks"): r"no active blocks",
            ("admin", "unlock"): r"had no failed sign-ins to clear",
            ("admin", "rollcall"): r"roll-call: \d+ devices challenged",
            ("admin", "incident", "declare"): r"incident \d+: ",
            ("rewards", "close"): r"",
            ("rewards", "show"): DEV_WALLET,
        }
        steps: dict[tuple[str, ...], Callable[[list[str]], None]] = {
            key: functools.partial(self.operate, expect=pattern)
            for key, pattern in expect.items()
        }
        steps[("admin", "block", "address")] = block
        self.follow("Operators", steps)

    def follow(self, section: str, steps: dict[tuple[str, ...], Callable[[list[str]], None]]
               ) -> None:
        commands = readme_commands(section)
        unknown = [c for c in commands if command_key(c) not in steps]
        assert not unknown, f"README's {section} names commands this walk does not know: {unknown}"
        named = {command_key(c) for c in commands}
        assert set(steps) <= named, f"README's {section} no longer names {set(steps) - named}"
        for argv in commands:
            steps[command_key(argv)](self.fill_in(argv))
            self.done.append(command_key(argv))


def test_readme_supplier_and_operator_sections_work_as_written(
    make_run: Network, tmp_path: Path
) -> None:
    walk = Walk(make_run, tmp_path)
    try:
        walk.suppliers()
        # The network pays its first epoch and prints the one command that checks it.
        verify = shlex.split(make_run.wait_line(
            "a verify command", lambda x: x.strip().startswith("gpunet rewards verify "), 90
        ))
        walk.epoch = verify[verify.index("--epoch") + 1]
        walk.operators()
    finally:
        walk.stop_agent()
    # Exactly what was printed, run while the network is up (it fetches the proof) ...
    checked = walk.run(verify)
    assert checked.stdout.startswith(f"OK: {DEV_WALLET} was paid")
    assert int(verify[verify.index("--amount") + 1]) > 0
    assert verify[verify.index("--wallet") + 1] == DEV_WALLET
    # ... and the explorer's own proof JSON, saved to a file, checks the same way.
    url = verify[verify.index("--from-url") + 1]
    saved = tmp_path / "proof.json"
    saved.write_text(httpx.get(url, timeout=10).text)
    offline = [*verify[: verify.index("--from-url")], "--proof", str(saved)]
    assert walk.run(offline).stdout.startswith(f"OK: {DEV_WALLET} was paid")
    assert any(re.match(r"devices: [1-9]\d* verified", line) for line in make_run.seen)
    # The explorer's URL is printed, and its front page is the network's overview.
    explorer = next(line.split()[1] for line in make_run.seen if line.startswith("explorer: "))
    front = httpx.get(explorer, timeout=10)
    assert front.status_code == 200 and 'id="verified-gpus"' in front.text
