"""A newcomer's first hour, timed: `gpunet dev up` (what `make run` starts) from an empty
state directory to every device verified, the first epoch paid, and the printed verify
command holding against the published root.

    .venv/bin/python bench/first_payout.py [--port 8000] [--agents 3] [--state DIR]

Run it from a fresh clone right after `make venv` (time that separately: `time make
venv`); the sum of the two is what `make run` costs a newcomer before their first
verified payout. Prints figures; asserts nothing about time.
"""

from __future__ import annotations

import argparse
import os
import queue
import re
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

GPUNET = str(Path(sys.executable).parent / "gpunet")


def _lines(proc: subprocess.Popen[str], out: queue.Queue[tuple[float, str]]) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        out.put((time.monotonic(), line.rstrip("\n")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--agents", type=int, default=3)
    ap.add_argument("--state", default=None, help="default: a fresh temporary directory")
    ap.add_argument("--limit-s", type=float, default=600.0)
    args = ap.parse_args()
    state = args.state or tempfile.mkdtemp(prefix="gpunet-first-payout-")
    # Only what `make run` itself sets: a newcomer has no GPUNET_* of their own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUNET_")}
    started = time.monotonic()
    proc = subprocess.Popen(
        [GPUNET, "dev", "up", "--port", str(args.port), "--agents", str(args.agents),
         "--state", state],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    lines: queue.Queue[tuple[float, str]] = queue.Queue()
    threading.Thread(target=_lines, args=(proc, lines), daemon=True).start()
    marks: dict[str, float] = {}
    command = None
    try:
        while command is None and time.monotonic() - started < args.limit_s:
            try:
                at, line = lines.get(timeout=1)
            except queue.Empty:
                if proc.poll() is not None:
                    raise SystemExit("gpunet dev up stopped; see its logs in " + state) from None
                continue
            print(f"{at - started:7.1f}s  {line}")
            if line.startswith("gpunet is running at"):
                marks.setdefault("coordinator up, agents started", at)
            if line.startswith(f"devices: {args.agents} verified"):
                marks.setdefault(f"all {args.agents} devices verified", at)
            if re.match(r"epoch \d+ closed: paid [1-9]", line):  # not the empty ones
                marks.setdefault("first epoch closed that paid", at)
            if line.strip().startswith("gpunet rewards verify "):
                command = line.strip()
        if command is None:
            raise SystemExit(f"no verify command within {args.limit_s:.0f} s")
        argv = shlex.split(command)
        checked = subprocess.run([GPUNET, *argv[1:]], env=env, capture_output=True, text=True)
        marks["the printed verify command holds"] = time.monotonic()
        print(checked.stdout.strip() or checked.stderr.strip())
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    print("\nfrom `gpunet dev up` on an empty state:")
    for what, at in sorted(marks.items(), key=lambda kv: kv[1]):
        print(f"  {at - started:7.1f} s  {what}")
    if checked.returncode != 0:
        raise SystemExit("the verify command failed")


if __name__ == "__main__":
    main()
