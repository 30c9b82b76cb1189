"""Outgoing e-mail to owners, behind one small interface.

The coordinator has no mail server of its own. What it sends (today: the one-time
unlock token of a locked-out account) goes through a `Mailer`; an operator who wants
real delivery plugs in an implementation that hands the message to their relay. The
ones here never leave the machine:

- `OutboxMailer` (development): one file per message in a directory, so a developer
  can open the unlock link a lock-out produced.
- `LogMailer` (the default elsewhere): logs that a message was due, to whom and about
  what, but never its body: the body carries a one-time secret and logs are read by
  more people than the mailbox owner.
- `MemoryMailer`: keeps messages in a list, for tests.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from gpunet.server.security.secrets import random_token

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
