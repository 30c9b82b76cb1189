"""A local guess at the catalog key for a device name.

The catalog (models, budgets, reward weights) is data owned by the coordinator; the
agent only suggests a key so it can pick a prover profile early. A wrong guess costs
nothing: the coordinator maps the claim itself and the proof decides (T1).

Keys are lowercase slugs: ``h100-sxm``, ``a100-80gb``, ``rtx-4090``, ``apple-m2-max``,
``cpu-dev``. Unknown names fall back to a slug of the name without vendor words.
"""

from __future__ import annotations

import re

_VENDOR_WORDS = re.compile(r"\b(nvidia|geforce|tesla|quadro)\b")
_NON_SLUG = re.compile(r"[^a-z0-9]+")
_A100_80GB_MIN_MIB = 60 * 1024


def slugify(text: str) -> str:
    return _NON_SLUG.sub("-", text.lower()).strip("-")


def guess_model_key(vendor: str, name: str, vram_mib: int) -> str | None:
    """Best-effort catalog key for ``name``; None when nothing usable is left."""
    lowered = name.lower()
    if vendor == "cpu":
        return "cpu-dev"
    if vendor == "apple":
        return slugify(lowered) or None
    base = slugify(_VENDOR_WORDS.sub(" ", lowered))
    if "h100" in base:
        if "nvl" in base:
            return "h100-nvl"
        return "h100-pcie" if "pcie" in base else "h100-sxm"
    if "h200" in base:
        return "h200-nvl" if "nvl" in base else "h200"
    if "a100" in base:
        return "a100-80gb" if vram_mib >= _A100_80GB_MIN_MIB else "a100-40gb"
    return base or None
