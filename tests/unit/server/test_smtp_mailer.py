"""SmtpMailer against a real SMTP server (aiosmtpd, tests/smtp.py): STARTTLS with a
login, implicit TLS, and every way delivery fails without the caller noticing."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import pytest
from tests.smtp import HOST, free_port, relay, server_tls

from gpunet.server.services.mailer import Message, SmtpMailer, SmtpRelay
from gpunet.server.settings import SmtpSecurity

MAIL = Message(to="owner@example.com", subject="gpunet: your account is locked", body="t0k3n\n")
LOGIN = ("gpunet-relay", "relay password")


def mailer(
    port: int,
    security: SmtpSecurity,
    client_tls: ssl.SSLContext | None = None,
    username: str | None = None,
    password: str | None = None,
) -> SmtpMailer:
    config = SmtpRelay(
        host=HOST,
        port=port,
        security=security,
        sender="gpunet@coordinator.test",
        username=username,
        password=password,
    )
    return SmtpMailer(config, tls=client_tls)


def test_starttls_with_a_login_delivers_the_message(tmp_path: Path) -> None:
    server_ctx, client_ctx = server_tls(tmp_path)
    with relay(starttls=server_ctx, login=LOGIN) as (inbox, port):
        m = mailer(port, SmtpSecurity.STARTTLS, client_ctx, *LOGIN)
        m.send(MAIL)
        assert m.flush(30)
    assert inbox.logins == [LOGIN[0]]
    [(recipients, mail)] = inbox.mails
    assert recipients == ["owner@example.com"]
    assert mail["From"] == "gpunet@coordinator.test"
    assert mail["To"] == "owner@example.com"
    assert mail["Subject"] == MAIL.subject
    assert mail["Message-ID"] and mail["Date"]
    assert mail.get_content().strip() == "t0k3n"


def test_implicit_tls_delivers_the_message(tmp_path: Path) -> None:
    server_ctx, client_ctx = server_tls(tmp_path)
    with relay(implicit_tls=server_ctx, login=LOGIN) as (inbox, port):
        m = mailer(port, SmtpSecurity.TLS, client_ctx, *LOGIN)
        m.send(MAIL)
        assert m.flush(30)
    assert [r for r, _ in inbox.mails] == [["owner@example.com"]]
    assert inbox.logins == [LOGIN[0]]


def test_a_relay_without_starttls_gets_nothing_in_the_clear(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _server_ctx, client_ctx = server_tls(tmp_path)
    with relay() as (inbox, port), caplog.at_level(logging.ERROR):
        m = mailer(port, SmtpSecurity.STARTTLS, client_ctx, *LOGIN)
        m.send(MAIL)  # never raises: the caller is in the middle of a sign-in
        assert m.flush(30)
    assert inbox.mails == [] and inbox.logins == []
    assert "not delivered" in caplog.text
    assert "t0k3n" not in caplog.text  # the body (a one-time secret) is never logged


def test_a_wrong_relay_password_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    server_ctx, client_ctx = server_tls(tmp_path)
    with relay(starttls=server_ctx, login=LOGIN) as (inbox, port), caplog.at_level(logging.ERROR):
        m = mailer(port, SmtpSecurity.STARTTLS, client_ctx, LOGIN[0], "wrong")
        m.send(MAIL)
        assert m.flush(30)
    assert inbox.mails == []
    assert "535" in caplog.text  # refused by the relay, said so


def test_an_untrusted_certificate_is_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server_ctx, _client_ctx = server_tls(tmp_path)
    (tmp_path / "other").mkdir()
    _other_server, other_client = server_tls(tmp_path / "other")  # trusts another one
    with relay(starttls=server_ctx) as (inbox, port), caplog.at_level(logging.ERROR):
        m = mailer(port, SmtpSecurity.STARTTLS, other_client)
        m.send(MAIL)
        assert m.flush(30)
    assert inbox.mails == []
    assert "CERTIFICATE_VERIFY_FAILED" in caplog.text


def test_an_unreachable_relay_and_a_hostile_recipient_are_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.ERROR):
        m = mailer(free_port(), SmtpSecurity.NONE)  # nothing listens there
        m.send(MAIL)
        assert m.flush(30)
    assert "not delivered" in caplog.text
    with relay() as (inbox, port), caplog.at_level(logging.ERROR):
        m = mailer(port, SmtpSecurity.NONE)
        m.send(Message(to="a@example.com\r\nBcc: all@example.com", subject="s", body="b"))
        m.send(MAIL)  # the worker carries on after a refused message
        assert m.flush(30)
    assert [r for r, _ in inbox.mails] == [["owner@example.com"]]
