"""`make test` in two checkouts on one machine: each checkout's PostgreSQL and Redis
(scripts/test-*.sh) get their own free port and state under that checkout's var/, a
second call reuses the first's server, and `stop` (what `make clean` runs) ends them."""

from __future__ import annotations

import glob
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def _run(script: Path, *args: str) -> str:
    done = subprocess.run([str(script), *args], env=ENV, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@pytest.mark.parametrize(
    ("name", "needs"),
    [("test-postgres.sh", "/usr/lib/postgresql/*/bin"), ("test-redis.sh", "redis-server")],
)
def test_two_checkouts_get_their_own_servers(name: str, needs: str) -> None:
    if not (glob.glob(needs) if needs.startswith("/") else shutil.which(needs)):
        pytest.skip(f"{needs} is not installed")
    # Run as root, the cluster runs as the postgres user, which must reach the checkout:
    # pytest's own temporary tree is private to its user, so the clones live beside it.
    tmp_path = Path(tempfile.mkdtemp(prefix="gpunet-clones-", dir="/tmp"))
    tmp_path.chmod(0o755)
    clones = []
    for i in range(2):
        (tmp_path / f"clone{i}" / "scripts").mkdir(parents=True)
        script = tmp_path / f"clone{i}" / "scripts" / name
        shutil.copy2(SCRIPTS / name, script)
        clones.append(script)
    try:
        urls = [_run(s) for s in clones]
        assert urls[0] != urls[1], "two checkouts must not share one server"
        assert [_run(s) for s in clones] == urls, "a second call reuses the running server"
        for i in range(2):
            assert (tmp_path / f"clone{i}" / "var").is_dir()  # state under the checkout
    finally:
        for s in clones:
            _run(s, "stop")
    # Stopped: the next call starts afresh rather than pointing at a dead port.
    again = _run(clones[0])
    _run(clones[0], "stop")
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert again.startswith(("postgresql://", "redis://"))
