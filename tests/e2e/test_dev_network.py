"""`make run` shows the whole story: `gpunet dev up` as a newcomer runs it (processes,
SQLite, cpu-dev agents) reaches a closed epoch that pays the development owner, and the
verify command it prints checks that payout against the published root.

Epochs are shortened further than dev up's own default only to keep the test quick; the
path is the same one `make run` takes.
"""

from __future__ import annotations

import os
import queue
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from gpunet.cli.dev import DEV_WALLET

GPUNET = str(Path(sys.executable).parent / "gpunet")


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


def _lines(proc: subprocess.Popen[str], out: queue.Queue[str]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.put(line.rstrip("\n"))


def test_dev_up_pays_the_dev_owner_and_prints_a_verify_command_that_holds(
    tmp_path: Path,
) -> None:
    port = two_free_ports()
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUNET_")}
    env.update(GPUNET_REWARDS_EPOCH_SECONDS="12", GPUNET_REWARDS_SLOT_SECONDS="1")
    proc = subprocess.Popen(
        [GPUNET, "dev", "up", "--port", str(port), "--agents", "1", "--state", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    seen: list[str] = []
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=_lines, args=(proc, lines), daemon=True).start()
    command = None
    try:
        deadline = time.monotonic() + 75
        while command is None and time.monotonic() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                assert proc.poll() is None, "\n".join(seen)
                continue
            seen.append(line)
            if line.strip().startswith("gpunet rewards verify "):
                command = line.strip()
        assert command is not None, "no verify command printed:\n" + "\n".join(seen)
        # Exactly what was printed, run while the network is up (it fetches the proof).
        argv = shlex.split(command)
        checked = subprocess.run(
            [GPUNET, *argv[1:]], env=env, capture_output=True, text=True, timeout=30
        )
        # The explorer's URL is printed, and its front page is the network's overview.
        explorer = next(line.split()[1] for line in seen if line.startswith("explorer: "))
        front = httpx.get(explorer, timeout=10)
        assert front.status_code == 200 and 'id="verified-gpus"' in front.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.startswith(f"OK: {DEV_WALLET} was paid")
    assert int(argv[argv.index("--amount") + 1]) > 0
    assert argv[argv.index("--wallet") + 1] == DEV_WALLET
    assert any("verified" in line and not line.startswith("devices: 0 verified")
               for line in seen if line.startswith("devices: "))
