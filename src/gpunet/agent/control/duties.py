"""What the agent does on an open session, each duty on its own.

A duty is a small object with an `interval` and an async `run(link)` that does one
round. `drive` repeats it, logging and carrying on after any failure: a prover that
crashes does not stop heartbeats, and a failing command does not stop proofs.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gpunet.agent.control.link import Link
from gpunet.agent.provers.base import Prover
from gpunet.agent.proving import ProofOutcome, outcome_of
from gpunet.core import control
from gpunet.core.control import ProtocolError
from gpunet.core.pog import Challenge, Commitment, HardwareReport, OpeningRequest
from gpunet.core.pog.messages import CommitmentEnvelope
from gpunet.core.pog.wire import encode_openings

log = logging.getLogger("gpunet.agent.control")
CommandHandler = Callable[[dict[str, Any]], Awaitable[Any]]
ProverFor = Callable[[str], Prover]
HardwareFor = Callable[[str], HardwareReport]
# A confidential-computing report for (device, challenge), over the challenge's
# attestation nonce, or None where the device has none to give.
AttestationFor = Callable[[str, Challenge], bytes | None]


class Duty:
    name = "duty"
    interval: float = 0.0

    async def run(self, link: Link) -> None:
        raise NotImplementedError


async def drive(duty: Duty, link: Link) -> None:
    """Run `duty` round after round until the session ends or the task is cancelled."""
    while not link.closed:
        try:
            await duty.run(link)
        except asyncio.CancelledError:
            raise
        except ConnectionError:
            return
        except Exception:
            log.exception("%s duty failed; it carries on", duty.name)
            await asyncio.sleep(max(duty.interval, 1.0))
            continue
        if duty.interval:
            await asyncio.sleep(duty.interval)


class HeartbeatDuty(Duty):
    """One compact frame for every device of the host, at the interval the server set."""

    name = "heartbeat"

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.seq = 0
        self.sent = 0

    async def run(self, link: Link) -> None:
        self.seq += 1
        link.send(control.heartbeat(self.seq))
        self.sent += 1


class ProofDuty(Duty):
    """Answers pushed challenges; each device's proof runs in its own thread and task."""

    name = "proofs"

    def __init__(
        self,
        provers: ProverFor,
        hardware: HardwareFor | None,
        on_outcome: Callable[[str, ProofOutcome], None],
        *,
        busy: set[str] | None = None,
        attestation: AttestationFor | None = None,
    ) -> None:
        self.queue: asyncio.Queue[tuple[str, Challenge]] = asyncio.Queue()
        self._provers = provers
        self._hardware = hardware
        self._on_outcome = on_outcome
        self._attestation = attestation
        self._busy: set[str] = set() if busy is None else busy
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, link: Link) -> None:
        device_id, challenge = await self.queue.get()
        if device_id in self._busy:
            log.warning("device %s is still proving; challenge %s waits", device_id, challenge.id)
        task = asyncio.get_running_loop().create_task(self._prove(link, device_id, challenge))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _prove(self, link: Link, device_id: str, challenge: Challenge) -> None:
        while device_id in self._busy:
            await asyncio.sleep(0.05)
        self._busy.add(device_id)
        prover = self._provers(device_id)
        try:
            outcome = await self._exchange(link, device_id, prover, challenge)
        except ConnectionError:
            return  # the session dropped; the coordinator re-sends on the next session
        except Exception:
            log.exception("challenge %s for %s could not be answered", challenge.id, device_id)
            return
        finally:
            self._busy.discard(device_id)
            await asyncio.to_thread(prover.release)
        log.info("challenge %s for %s: %s (device is %s)", challenge.id, device_id,
                 "passed" if outcome.passed else f"failed: {outcome.reason}", outcome.status)
        self._on_outcome(device_id, outcome)

    async def _exchange(
        self, link: Link, device_id: str, prover: Prover, challenge: Challenge
    ) -> ProofOutcome:
        if self._hardware is None:
            raise RuntimeError("no hardware reporter configured: cannot answer challenges")
        log.info("challenge %s for %s: n=%d, %d steps, budget %.1fs", challenge.id, device_id,
                 challenge.params.n, challenge.params.steps, challenge.budget_s)
        commitment: Commitment = await asyncio.to_thread(prover.commit, challenge)
        report = await asyncio.to_thread(self._hardware, device_id)
        attestation = None
        if self._attestation is not None:
            attestation = await asyncio.to_thread(self._attestation, device_id, challenge)
        envelope = CommitmentEnvelope(
            commitment=commitment, hardware=report, attestation=attestation
        )
        reply = link.expect(("dev", device_id))
        link.send({"t": "commitment", "device": device_id,
                   "body": envelope.model_dump_json().encode()})
        answer = await reply
        if answer["t"] == "open":
            request = OpeningRequest.model_validate_json(control.body_of(answer)[1])
            if request.challenge_id != challenge.id:
                raise ProtocolError("the coordinator asked to open another challenge")
            response = await asyncio.to_thread(prover.open, request)
            body = await asyncio.to_thread(encode_openings, response)
            reply = link.expect(("dev", device_id))
            # Part by part, each drained before the next: the socket paces the upload
            # and no more than a part waits in this process's buffers.
            for frame in control.openings_frames(device_id, challenge.id, body):
                link.send(frame)
                await link.drain()
            answer = await reply
        if answer["t"] == "error":
            raise RuntimeError(f"coordinator refused: {answer.get('message')}")
        return outcome_of(answer)


class CommandDuty(Duty):
    """Runs the coordinator's cluster commands and acknowledges each with its result."""

    name = "commands"

    def __init__(self, handlers: Mapping[str, CommandHandler]) -> None:
        self.queue: asyncio.Queue[tuple[str, str, dict[str, Any]]] = asyncio.Queue()
        self._handlers = handlers

    async def run(self, link: Link) -> None:
        command_id, name, args = await self.queue.get()
        handler = self._handlers.get(name)
        if handler is None:
            link.send(control.command_result(command_id, ok=False,
                                             error=f"unknown command {name}"))
            return
        try:
            result = await handler(args)
        except Exception as exc:
            log.warning("command %s (%s) failed: %s", name, command_id, exc)
            link.send(control.command_result(command_id, ok=False, error=str(exc)))
            return
        link.send(control.command_result(command_id, ok=True, result=result))


def new_command_id() -> str:
    return secrets.token_hex(8)
