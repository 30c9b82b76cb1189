"""Running the system's own reporting tools (sysctl, system_profiler, ioreg).

A runner takes an argv (absolute program path, never a shell string) and returns its
standard output, or raises ``CommandError``. Tests pass a fake runner.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence

CommandRunner = Callable[[Sequence[str]], str]
COMMAND_TIMEOUT_S = 20.0
MAX_OUTPUT_CHARS = 4 * 1024 * 1024


class CommandError(RuntimeError):
    """The command is missing, failed, timed out, or printed too much."""


def run_command(argv: Sequence[str]) -> str:
    """Run ``argv`` without a shell, with a timeout; return stdout as text."""
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv from this package, no shell
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise CommandError(f"{argv[0]}: {exc}") from exc
    if proc.returncode != 0:
        raise CommandError(f"{argv[0]} exited with status {proc.returncode}")
    if len(proc.stdout) > MAX_OUTPUT_CHARS:
        raise CommandError(f"{argv[0]} printed more than {MAX_OUTPUT_CHARS} characters")
    return proc.stdout
