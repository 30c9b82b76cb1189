"""cpu-dev is paid on a local network (so `make run` shows a payout) and never in
production, whatever GPUNET_DEV_REWARD_WEIGHT says."""

from __future__ import annotations

from fractions import Fraction

from gpunet.core.pog import load_catalog
from gpunet.server.services.reward_config import load_config
from gpunet.server.settings import Settings

SECRET = "x" * 40


def test_development_pays_cpu_dev_the_dev_weight_and_real_profiles_their_own() -> None:
    catalog = load_catalog(None)
    weights = load_config(Settings(dev_reward_weight=1), catalog).weights
    assert weights["cpu-dev"] == Fraction(1)
    assert weights["h100-sxm"] == Fraction(10)


def test_development_without_the_setting_pays_cpu_dev_nothing() -> None:
    assert load_config(Settings(), load_catalog(None)).weights["cpu-dev"] == 0


def test_production_never_pays_cpu_dev() -> None:
    settings = Settings(environment="production", secret_key=SECRET, dev_reward_weight=5)
    assert load_config(settings, load_catalog(None)).weights["cpu-dev"] == 0
