"""What the kernel itself says about NVIDIA GPUs, to cross-check NVML against (T8).

Two independent views, both read under an injectable ``root`` (``/`` in production, a
``tmp_path`` tree in tests):

* the NVIDIA kernel driver: ``proc/driver/nvidia/gpus/<bus id>/information``, one
  directory per GPU the driver bound, with ``Model:``, ``GPU UUID:`` and
  ``Bus Location:`` lines;
* the PCI core: ``sys/bus/pci/devices/<bus id>/{vendor,class}``, where an NVIDIA GPU has
  vendor ``0x10de`` and class ``0x0300xx`` (VGA) or ``0x0302xx`` (3D controller).

A user-space NVML shim can invent devices; it cannot add entries to these trees
without also faking the kernel, which is a much larger step (and still has to pass a
proof of GPU). Bus ids are compared in one canonical form, see ``canonical_bus_id``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

NVIDIA_PCI_VENDOR = 0x10DE
GPU_PCI_CLASSES = (0x0300, 0x0302)  # VGA compatible controller, 3D controller
PROC_GPUS = Path("proc/driver/nvidia/gpus")
SYS_PCI_DEVICES = Path("sys/bus/pci/devices")
MAX_INFO_BYTES = 64 * 1024

_BUS_ID_RE = re.compile(
    r"^(?:(?P<domain>[0-9A-Fa-f]{1,8}):)?(?P<bus>[0-9A-Fa-f]{2}):"
    r"(?P<dev>[0-9A-Fa-f]{2})\.(?P<fn>[0-7])$"
)
_INFO_LINE_RE = re.compile(r"^(?P<key>[A-Za-z][A-Za-z ]*?)\s*:\s*(?P<value>.*?)\s*$")


def canonical_bus_id(text: str) -> str | None:
    """``domain:bus:device.function`` as lowercase hex with a 4-digit domain.

    NVML prints an 8-digit upper-case domain (``00000000:17:00.0``); the kernel prints
    4 digits (``0000:17:00.0``). Domains above 0xffff keep their full width. Returns
    None for anything that is not a bus id.
    """
    m = _BUS_ID_RE.match(text.strip())
    if m is None:
        return None
    domain = int(m["domain"] or "0", 16)
    return f"{domain:04x}:{m['bus'].lower()}:{m['dev'].lower()}.{m['fn']}"


@dataclass(frozen=True, slots=True)
class KernelGpu:
    """One GPU as the NVIDIA kernel driver reports it."""

    bus_id: str
    model: str | None
    uuid: str | None  # None when the driver masks it ("GPU-????...") or omits it


@dataclass(frozen=True, slots=True)
class KernelView:
    """The kernel's two views of NVIDIA GPUs; ``None`` means the tree is absent."""

    driver_gpus: dict[str, KernelGpu] | None
    pci_gpus: frozenset[str] | None
    problems: tuple[str, ...] = ()


def parse_information(text: str) -> dict[str, str]:
    """The ``key: value`` lines of a driver ``information`` file."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        m = _INFO_LINE_RE.match(line)
        if m is not None:
            fields[m["key"].strip()] = m["value"]
    return fields


def _read_small(path: Path) -> str:
    with path.open("rb") as fh:
        data = fh.read(MAX_INFO_BYTES + 1)
    if len(data) > MAX_INFO_BYTES:
        raise OSError(f"{path} is larger than {MAX_INFO_BYTES} bytes")
    return data.decode("utf-8", errors="replace")


def read_driver_gpus(root: Path) -> tuple[dict[str, KernelGpu] | None, list[str]]:
    """GPUs under ``proc/driver/nvidia/gpus``, keyed by canonical bus id."""
    base = root / PROC_GPUS
    if not base.is_dir():
        return None, []
    gpus: dict[str, KernelGpu] = {}
    problems: list[str] = []
    for entry in sorted(base.iterdir()):
        bus_id = canonical_bus_id(entry.name)
        if bus_id is None:
            problems.append(f"unexpected entry {entry.name!r} in /{PROC_GPUS}")
            continue
        try:
            fields = parse_information(_read_small(entry / "information"))
        except OSError as exc:
            problems.append(f"cannot read /{PROC_GPUS}/{entry.name}/information: {exc}")
            continue
        location = canonical_bus_id(fields.get("Bus Location", ""))
        if location is not None and location != bus_id:
            problems.append(
                f"/{PROC_GPUS}/{entry.name}/information says Bus Location {location}"
            )
            continue
        uuid = fields.get("GPU UUID") or None
        if uuid is not None and "?" in uuid:
            uuid = None
        gpus[bus_id] = KernelGpu(bus_id=bus_id, model=fields.get("Model") or None, uuid=uuid)
    return gpus, problems


def _read_hex(path: Path) -> int | None:
    try:
        return int(_read_small(path).strip(), 16)
    except (OSError, ValueError):
        return None


def read_pci_gpus(root: Path) -> frozenset[str] | None:
    """Bus ids of NVIDIA display/3D controllers in ``sys/bus/pci/devices``."""
    base = root / SYS_PCI_DEVICES
    if not base.is_dir():
        return None
    found: set[str] = set()
    for entry in base.iterdir():
        bus_id = canonical_bus_id(entry.name)
        if bus_id is None or _read_hex(entry / "vendor") != NVIDIA_PCI_VENDOR:
            continue
        pci_class = _read_hex(entry / "class")
        if pci_class is not None and (pci_class >> 8) in GPU_PCI_CLASSES:
            found.add(bus_id)
    return frozenset(found)


def read_kernel_view(root: Path = Path("/")) -> KernelView:
    driver_gpus, problems = read_driver_gpus(root)
    return KernelView(driver_gpus=driver_gpus, pci_gpus=read_pci_gpus(root),
                      problems=tuple(problems))
