"""README's settings table is generated from the settings classes: this fails when the
two differ (run `python scripts/settings_table.py` and paste its output)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import settings_table  # noqa: E402


def test_readme_settings_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text()
    assert settings_table.readme_table(readme) == settings_table.table(), (
        "README.md's settings table is stale: regenerate it with scripts/settings_table.py"
    )


def test_every_setting_says_what_it_means() -> None:
    blank = [r for r in settings_table.table().splitlines()[2:] if r.endswith("|  |")]
    assert not blank, f"settings without a comment in their class: {blank}"
    assert "GPUNET_PUBLIC_URL" in settings_table.table()
    assert "GPUNET_CATALOG_PATH" in settings_table.table()
