"""Operator settings that a production coordinator refuses to start with, and the
mailer the app factory picks from the settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from gpunet.cli.main import cli
from gpunet.server.app import build_state
from gpunet.server.services.mailer import LogMailer, OutboxMailer, SmtpMailer
from gpunet.server.settings import Settings

PRODUCTION: dict[str, Any] = {
    "environment": "production",
    "secret_key": "s" * 48,
    "argon2_memory_kib": 19456,
    "database_url": "sqlite://",
}


def test_a_short_metrics_token_stops_the_server_from_starting(tmp_path: Path) -> None:
    env = {
        "GPUNET_ENVIRONMENT": "production",
        "GPUNET_SECRET_KEY": "s" * 48,
        "GPUNET_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
        "GPUNET_METRICS_TOKEN": "scrape-me",
    }
    result = CliRunner().invoke(cli, ["server", "run"], env=env)
    assert result.exit_code == 1
    assert "GPUNET_METRICS_TOKEN must be at least 32 characters" in result.output
    assert "Traceback" not in result.output


def test_the_metrics_token_length_is_checked_outside_development_only() -> None:
    with pytest.raises(ValidationError, match="GPUNET_METRICS_TOKEN"):
        Settings(**PRODUCTION, metrics_token="x" * 31)
    assert Settings(**PRODUCTION, metrics_token="x" * 32).metrics_token is not None
    assert Settings(database_url="sqlite://", metrics_token="dev").metrics_token is not None


def test_no_relay_password_in_the_clear_outside_development() -> None:
    relay = {"smtp_host": "mail.internal", "smtp_security": "none", "smtp_username": "gpunet"}
    with pytest.raises(ValidationError, match="GPUNET_SMTP_PASSWORD in the clear"):
        Settings(**PRODUCTION, **relay, smtp_password="relay password")
    # Without a password (a relay that trusts its network), or in development: allowed.
    Settings(**PRODUCTION, smtp_host="mail.internal", smtp_security="none")
    Settings(database_url="sqlite://", **relay, smtp_password="relay password")


def test_the_factory_sends_mail_through_the_relay_when_one_is_set(tmp_path: Path) -> None:
    def mailer(**values: Any) -> object:
        return build_state(Settings(**values)).mailer

    assert isinstance(mailer(**PRODUCTION), LogMailer)
    assert isinstance(mailer(database_url="sqlite://", data_dir=tmp_path), OutboxMailer)
    relayed = Settings(**PRODUCTION, smtp_host="mail.internal", public_url="https://gpu.example")
    assert isinstance(build_state(relayed).mailer, SmtpMailer)
    assert relayed.mail_sender == "gpunet@gpu.example"
    named = Settings(**PRODUCTION, mail_from="gpunet <noreply@example.org>")
    assert named.mail_sender == "gpunet <noreply@example.org>"
