"""A stable, non-reversible fingerprint of this host.

Invariants:

* stable across reboots and agent restarts: it hashes the machine id (systemd's
  ``/etc/machine-id``, D-Bus's copy, or macOS's IOPlatformUUID) with boot-independent
  facts (OS family, CPU architecture), never the hostname, an address or a boot id;
* it does not reveal the machine id: the id is hashed under a gpunet-specific context,
  as machine-id(5) asks of applications that need a host identifier;
* its text is 64 lowercase hex characters, inside the ``HostFingerprint`` pattern.

The coordinator uses it to group devices that share a host for simultaneous
challenges (T8); it is a claim like any other and proves nothing by itself.
"""

from __future__ import annotations

import hashlib
import platform
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from gpunet.agent.discovery.commands import CommandError, CommandRunner, run_command

CONTEXT = b"gpunet-host-fingerprint-v1"
MACHINE_ID_FILES = ("etc/machine-id", "var/lib/dbus/machine-id")
_MACHINE_ID_RE = re.compile(r"^[0-9a-fA-F]{32}$")
_PLATFORM_UUID_RE = re.compile(r'"IOPlatformUUID"\s*=\s*"([0-9A-Fa-f-]{36})"')


class FingerprintUnavailable(RuntimeError):
    """No stable machine identifier could be read on this host."""


@dataclass(frozen=True, slots=True)
class HostFacts:
    """The inputs of the fingerprint; build one by hand in tests."""

    machine_id: str
    system: str
    machine: str


def host_fingerprint(facts: HostFacts) -> str:
    """Hash the facts under the gpunet context; 64 hex characters."""
    digest = hashlib.sha256()
    for part in (CONTEXT, facts.machine_id.strip().lower().encode(),
                 facts.system.lower().encode(), facts.machine.lower().encode()):
        digest.update(len(part).to_bytes(4, "big"))
        digest.update(part)
    return digest.hexdigest()


def read_machine_id(root: Path = Path("/"),
                    files: Sequence[str] = MACHINE_ID_FILES) -> str | None:
    """The systemd/D-Bus machine id under ``root``, or None if none is well-formed."""
    for rel in files:
        try:
            text = (root / rel).read_text(encoding="ascii").strip()
        except (OSError, UnicodeDecodeError):
            continue
        if _MACHINE_ID_RE.match(text) and set(text) != {"0"}:
            return text.lower()
    return None


def read_platform_uuid(runner: CommandRunner = run_command) -> str | None:
    """macOS's IOPlatformUUID from ``ioreg``, or None where ioreg is absent or fails."""
    try:
        out = runner(["/usr/sbin/ioreg", "-rd1", "-c", "IOPlatformExpertDevice"])
    except CommandError:
        return None
    m = _PLATFORM_UUID_RE.search(out)
    return m.group(1).upper() if m else None


def read_host_facts(*, root: Path = Path("/"), runner: CommandRunner = run_command,
                    system: str | None = None, machine: str | None = None) -> HostFacts:
    """Collect the fingerprint inputs; raises FingerprintUnavailable if there is no id."""
    system = system or platform.system()
    machine = machine or platform.machine()
    ident = read_platform_uuid(runner) if system == "Darwin" else read_machine_id(root)
    if ident is None:
        raise FingerprintUnavailable(
            "no stable machine id found (looked for /etc/machine-id, "
            "/var/lib/dbus/machine-id, or IOPlatformUUID on macOS); "
            "create one with `systemd-machine-id-setup` or `dbus-uuidgen --ensure`"
        )
    return HostFacts(machine_id=ident, system=system, machine=machine)


def local_host_fingerprint(*, root: Path = Path("/"),
                           runner: CommandRunner = run_command) -> str:
    """The fingerprint of the machine this runs on."""
    return host_fingerprint(read_host_facts(root=root, runner=runner))
