"""The real `gpunet` command line, with one test hook: the process SIGKILLs itself when
a key rotation reaches the step named by $GPUNET_TEST_KILL_AT (one of
`gpunet.agent.rotation.STEPS`).

Run as `python -m tests.e2e.kill_at_step worker rotate-key ...`. Only this launcher
installs the hook (`rotation.on_step`); the installed `gpunet` never reads the variable,
so no production process can be told to kill itself.
"""

from __future__ import annotations

import os
import signal

from gpunet.agent import rotation
from gpunet.cli.main import cli


def _kill_at(step: str) -> None:
    # SIGKILL, not an exception: no finally block, atexit or buffered write runs, which
    # is exactly what a power cut or the OOM killer leaves behind.
    if step == os.environ["GPUNET_TEST_KILL_AT"]:
        os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    if os.environ.get("GPUNET_TEST_KILL_AT") not in rotation.STEPS:
        raise SystemExit(f"GPUNET_TEST_KILL_AT must be one of {', '.join(rotation.STEPS)}")
    rotation.on_step = _kill_at
    cli(prog_name="gpunet")
