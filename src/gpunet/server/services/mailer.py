"""Outgoing e-mail to owners, behind one small interface.

The coordinator has no mail server of its own. What it sends (today: the one-time
unlock token of a locked-out account) goes through a `Mailer`:

- `SmtpMailer` (whenever GPUNET_SMTP_HOST is set): hands each message to the
  operator's SMTP relay, STARTTLS or implicit TLS, with a login if the relay wants one.
- `OutboxMailer` (development without a relay): one file per message in a directory,
  so a developer can open the unlock link a lock-out produced.
- `LogMailer` (elsewhere without a relay): logs that a message was due, to whom and
  about what, but never its body: the body carries a one-time secret and logs are read
  by more people than the mailbox owner.
- `MemoryMailer`: keeps messages in a list, for tests.
"""

from __future__ import annotations

import logging
import queue
import re
import smtplib
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

from gpunet.server.security.secrets import random_token
from gpunet.server.settings import SmtpSecurity

log = logging.getLogger("gpunet.server.mail")


@dataclass(frozen=True, slots=True)
class Message:
    to: str
    subject: str
    body: str


class Mailer(Protocol):
    def send(self, message: Message) -> None:
        """Hand the message on; must not raise for a delivery problem (log it instead),
        since the caller is in the middle of a sign-in."""
        ...


class LogMailer:
    def send(self, message: Message) -> None:
        log.warning(
            "mail to %s not delivered (no mailer configured): %s", message.to, message.subject
        )


class OutboxMailer:
    def __init__(self, directory: Path) -> None:
        self._directory = directory

    def send(self, message: Message) -> None:
        # The recipient is user input: keep only filename-safe characters of it.
        safe_to = re.sub(r"[^A-Za-z0-9@._-]", "_", message.to)[:80]
        path = self._directory / f"{safe_to}-{random_token(6)}.txt"
        try:
            self._directory.mkdir(parents=True, exist_ok=True)
            path.write_text(f"To: {message.to}\nSubject: {message.subject}\n\n{message.body}\n")
        except OSError as exc:
            log.error("could not write mail to %s: %s", path, exc)
            return
        log.info("mail to %s written to %s: %s", message.to, path, message.subject)


class MemoryMailer:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def send(self, message: Message) -> None:
        self.sent.append(message)


@dataclass(frozen=True, slots=True)
class SmtpRelay:
    host: str
    port: int
    security: SmtpSecurity
    sender: str
    username: str | None = None
    password: str | None = None
    timeout_s: float = 10.0


class SmtpMailer:
    """Delivery through an SMTP relay, off the caller's thread.

    `send` only queues the message. Its caller is in the middle of a sign-in, inside
    the request's database transaction, which must not wait on a mail server: a slow
    or unreachable relay would hold the transaction (on SQLite, the one write lock) for
    the whole SMTP timeout. One worker thread delivers the queue in order; a message it
    cannot deliver is logged (never its body) and dropped, since the next lock-out
    sends a fresh token anyway. The queue is bounded, so a relay that is down cannot
    grow memory without limit.
    """

    def __init__(
        self, relay: SmtpRelay, *, tls: ssl.SSLContext | None = None, queue_size: int = 1000
    ) -> None:
        self._relay = relay
        # The system's trust store and hostname checks, unless a test brings its own CA.
        self._tls = tls or ssl.create_default_context()
        self._queue: queue.Queue[Message] = queue.Queue(maxsize=queue_size)
        self._pending = 0
        self._idle = threading.Condition()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def send(self, message: Message) -> None:
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            self._done()
            log.error("mail to %s dropped: the outgoing queue is full", message.to)
            return
        self._ensure_worker()

    def flush(self, timeout_s: float) -> bool:
        """Wait until every queued message was delivered or given up; False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout_s)

    def _ensure_worker(self) -> None:
        with self._start_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._run, name="gpunet-smtp", daemon=True)
                self._worker.start()

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            try:
                self.deliver(message)
            except (OSError, smtplib.SMTPException, ValueError) as exc:
                # OSError covers refused connections, timeouts and TLS failures.
                log.error("mail to %s not delivered (%s): %s", message.to, exc, message.subject)
            else:
                log.info(
                    "mail to %s handed to %s: %s", message.to, self._relay.host, message.subject
                )
            finally:
                self._done()

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def deliver(self, message: Message) -> None:
        """One message, one connection (lock-outs are rare; no connection is kept)."""
        relay = self._relay
        mail = EmailMessage()
        mail["From"] = relay.sender
        mail["To"] = message.to
        mail["Subject"] = message.subject
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = make_msgid(domain=relay.sender.rpartition("@")[2].strip(">") or None)
        mail.set_content(message.body)
        smtp: smtplib.SMTP
        if relay.security is SmtpSecurity.TLS:
            smtp = smtplib.SMTP_SSL(
                relay.host, relay.port, timeout=relay.timeout_s, context=self._tls
            )
        else:
            smtp = smtplib.SMTP(relay.host, relay.port, timeout=relay.timeout_s)
        with smtp:
            smtp.ehlo()
            if relay.security is SmtpSecurity.STARTTLS:
                # Refuses to go on in the clear if the relay does not offer STARTTLS.
                smtp.starttls(context=self._tls)
                smtp.ehlo()
            if relay.username:
                smtp.login(relay.username, relay.password or "")
            smtp.send_message(mail)
