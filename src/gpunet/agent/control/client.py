"""The agent's end of the control channel: one session per host, kept up for ever.

`ControlClient.run()` connects, proves every local device's key over the server's
nonce, then runs the duties (heartbeats, proofs, commands) until the session drops;
it reconnects with jittered exponential backoff, trying the next endpoint (replica)
each time, until `stop()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl as _ssl
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gpunet import __version__
from gpunet.agent.control.backoff import Backoff
from gpunet.agent.control.duties import (
    AttestationFor,
    CommandDuty,
    CommandHandler,
    Duty,
    HardwareFor,
    HeartbeatDuty,
    ProofDuty,
    ProverFor,
    drive,
    new_command_id,
)
from gpunet.agent.control.link import Link
from gpunet.agent.keystore import Keystore
from gpunet.agent.provers import Prover, get_prover
from gpunet.agent.proving import ProofOutcome
from gpunet.core import control
from gpunet.core.control import (
    MAX_FRAME,
    PROTOCOL_MAX,
    PROTOCOL_MIN,
    Auth,
    Hello,
    ProtocolError,
    Upgrade,
    Welcome,
)
from gpunet.core.pog import Challenge
from gpunet.core.signing import DeviceSigner

log = logging.getLogger("gpunet.agent.control")
Endpoint = tuple[str, int]
# The coordinator's answer to a signature it does not accept (server.control.auth); the
# agent cannot import the server, so the words are repeated here.
NOT_AUTHENTICATED = "not authenticated: unknown device or bad signature"


class Refused(ConnectionError):
    """The coordinator ended the session with a reason (bye)."""


class ControlClient:
    """Keeps this host's control session up. See the module docstring.

    `server_id` is the coordinator's name as this agent knows it (its public URL, as
    stored at enrollment); device keys sign it, and a server calling itself anything
    else is not answered. `provers(device_id)` and `hardware(device_id)` give the
    prover and the current hardware report of a device; `attestation(device_id,
    challenge)` a confidential-computing report over the challenge's nonce, sent with
    the commitment (None: no report); `commands` maps cluster
    command names to async handlers taking the command's args.
    """

    def __init__(
        self,
        endpoints: Sequence[Endpoint],
        signers: Sequence[DeviceSigner],
        *,
        server_id: str,
        provers: ProverFor | None = None,
        hardware: HardwareFor | None = None,
        attestation: AttestationFor | None = None,
        commands: Mapping[str, CommandHandler] | None = None,
        agent_version: str = __version__,
        backoff: Backoff | None = None,
        on_upgrade: Callable[[Upgrade], None] | None = None,
        on_outcome: Callable[[str, ProofOutcome], None] | None = None,
        ssl: _ssl.SSLContext | None = None,
        connect_timeout_s: float = 10.0,
        max_frame: int = MAX_FRAME,
    ) -> None:
        if not endpoints or not signers:
            raise ValueError("a control client needs an endpoint and at least one device")
        self.endpoints = list(endpoints)
        self.signers = {s.device_id: s for s in signers}
        self.server_id = server_id
        self.hardware = hardware
        self.attestation = attestation
        self.commands: dict[str, CommandHandler] = dict(commands or {})
        self.agent_version = agent_version
        self.backoff = backoff or Backoff()
        self.on_upgrade = on_upgrade
        self.on_outcome = on_outcome
        self.ssl = ssl
        self.connect_timeout_s = connect_timeout_s
        self.max_frame = max_frame
        self._provers: dict[str, Prover] = {}
        # Devices whose prover is in use. Shared across sessions: a proof still running
        # in its thread when the session dropped keeps its prover until it ends.
        self._proving: set[str] = set()
        self._prover_for = provers or (lambda _device: get_prover("cpu"))
        # Public state, for `gpunet worker status` and tests.
        self.welcome: Welcome | None = None
        self.upgrade: Upgrade | None = None
        self.endpoint: Endpoint | None = None
        self.outcomes: dict[str, ProofOutcome] = {}
        self.last_bye: str | None = None
        self.sessions = 0
        self.connected = asyncio.Event()
        self.heartbeats_sent = 0
        self._link: Link | None = None
        self._stop = asyncio.Event()
        # Rotation recovery: devices whose next handshake signs with the pending key of
        # an interrupted rotation, and the pending keys already tried (each once, so a
        # device the coordinator refuses under both keys does not loop).
        self._try_pending: dict[str, DeviceSigner] = {}
        self._pending_tried: set[tuple[str, str]] = set()
        self.recovered: set[str] = set()  # devices that finished a rotation this way

    @classmethod
    def from_keystore(
        cls, keystore: Keystore, endpoints: Sequence[Endpoint], *,
        server_id: str | None = None, **kwargs: Any,
    ) -> ControlClient:
        """Every enrolled device of the host; `server_id` defaults to the coordinator URL
        the devices were enrolled with."""
        stored = [d for d in keystore.devices() if d.enrolled]
        if not stored:
            raise ValueError("no enrolled device in the keystore: run `gpunet worker enroll`")
        server_id = server_id or stored[0].coordinator_url
        if not server_id:
            raise ValueError("the keystore does not say which coordinator these devices joined")
        # Live signers follow a rotation done beside the agent and can fall back on a
        # pending key (see _recoverable).
        signers = [keystore.live_signer(d.gpu_uuid) for d in stored]
        return cls(endpoints, signers, server_id=server_id, **kwargs)

    # -- public API -----------------------------------------------------------------------
    @property
    def accepted(self) -> tuple[str, ...]:
        return self.welcome.accepted if self.welcome else ()

    @property
    def refused(self) -> dict[str, str]:
        return dict(self.welcome.refused) if self.welcome else {}

    async def run(self) -> None:
        """Stay connected until `stop()`: reconnect after any drop, rotating endpoints."""
        self._stop.clear()
        attempt, index = 0, 0
        while not self._stop.is_set():
            endpoint = self.endpoints[index % len(self.endpoints)]
            welcomed = False
            try:
                welcomed = await self._session(endpoint)
            except (OSError, ProtocolError, TimeoutError, ConnectionError) as exc:
                log.warning("control session with %s:%d ended: %s", *endpoint, exc)
            except asyncio.CancelledError:
                raise
            except Exception:
                # Staying up is the point: anything unexpected ends this session only.
                log.exception("control session with %s:%d failed", *endpoint)
            if self._stop.is_set():
                break
            attempt = 0 if welcomed else attempt + 1
            index += 1
            delay = self.backoff.delay(attempt)
            log.info("reconnecting in %.1fs (attempt %d)", delay, attempt + 1)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), delay)

    async def stop(self, reason: str = "agent shutting down") -> None:
        """Graceful shutdown: say bye (the coordinator logs why) and close."""
        self._stop.set()
        link = self._link
        if link is not None and not link.closed:
            with contextlib.suppress(Exception):
                link.send(control.bye(reason))
                await asyncio.wait_for(link.drain(), 2)
            link.close()

    async def command(self, name: str, args: dict[str, Any] | None = None,
                      *, timeout: float = 30.0) -> Any:
        """Send a command to the coordinator and wait for its acknowledged result."""
        link = self._require_link()
        command_id = new_command_id()
        fut = link.expect(("cmd", command_id))
        link.send(control.command(command_id, name, dict(args or {})))
        reply = await asyncio.wait_for(fut, timeout)
        if reply.get("ok") is not True:
            raise RuntimeError(f"coordinator refused command {name}: {reply.get('error')}")
        return reply.get("result")

    async def ping(self, timeout: float = 10.0) -> float:
        return await self._require_link().ping(timeout)

    def _require_link(self) -> Link:
        if self._link is None or self._link.closed:
            raise ConnectionError("not connected to the coordinator")
        return self._link

    def prover(self, device_id: str) -> Prover:
        if device_id not in self._provers:
            self._provers[device_id] = self._prover_for(device_id)
        return self._provers[device_id]

    # -- one session ----------------------------------------------------------------------
    async def _session(self, endpoint: Endpoint) -> bool:
        """One connection, start to end; True if the coordinator welcomed us."""
        host, port = endpoint
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, ssl=self.ssl, limit=self.max_frame),
            self.connect_timeout_s,
        )
        link = Link(reader, writer, self.max_frame)
        self._link = link
        duties: list[asyncio.Task[None]] = []
        try:
            welcome = await self._handshake(link)
            self.endpoint = endpoint
            self.sessions += 1
            # One line per session, so an operator reading the log sees the agent
            # come back after a coordinator restart or a network loss.
            log.info(
                "%s the control channel at %s:%d: %d device(s) accepted, %d refused",
                "reconnected to" if self.sessions > 1 else "connected to",
                host, port, len(welcome.accepted), len(welcome.refused),
            )
            if self._try_pending:
                # Devices refused under their current key that have a pending key to try
                # next: a fresh session at once (the handshake is one per session).
                log.info("retrying %d device(s) with a pending rotation key",
                         len(self._try_pending))
                with contextlib.suppress(Exception):
                    link.send(control.bye("retrying with a pending rotation key"))
                return True
            if not welcome.accepted:
                await link.next()  # the bye that follows says why
                return False  # nothing to do here: back off like any failure
            heartbeat = HeartbeatDuty(welcome.heartbeat_s)
            proofs = ProofDuty(self.prover, self.hardware, self._outcome, busy=self._proving,
                               attestation=self.attestation)
            commands = CommandDuty(self.commands)
            loop = asyncio.get_running_loop()
            duties = [loop.create_task(drive(d, link)) for d in (heartbeat, proofs, commands)]
            self.connected.set()
            await self._read(link, proofs, commands)
            self.heartbeats_sent += heartbeat.sent
            return True
        finally:
            self.connected.clear()
            for task in duties:
                task.cancel()
            link.close()
            self._link = None

    async def _handshake(self, link: Link) -> Welcome:
        first = await asyncio.wait_for(link.next(), self.connect_timeout_s)
        self._check_bye(first)
        hello = Hello.parse(first)
        # SECURITY: sign only for the coordinator we mean to talk to, never for the name
        # a server announces: a rogue server must not collect signatures it can relay.
        if hello.server_id != self.server_id:
            raise ProtocolError(
                f"this server calls itself {hello.server_id[:80]!r}, expected {self.server_id!r} "
                f"(the URL this agent enrolled with): set the coordinator's GPUNET_PUBLIC_URL "
                f"to {self.server_id}, or enroll again with --coordinator set to its public URL"
            )
        if control.negotiate(hello.protocols, (PROTOCOL_MIN, PROTOCOL_MAX)) is None:
            raise ProtocolError("no common protocol version: upgrade the agent")
        trying, self._try_pending = self._try_pending, {}
        entries = tuple(
            (device_id, trying.get(device_id, signer).sign(control.auth_message(
                server_id=self.server_id, nonce=hello.nonce, device_id=device_id)))
            for device_id, signer in self.signers.items()
        )
        link.send(Auth((PROTOCOL_MIN, PROTOCOL_MAX), self.agent_version, entries).wire())
        reply = await asyncio.wait_for(link.next(), self.connect_timeout_s * 3)
        self._check_bye(reply)
        welcome = Welcome.parse(reply)
        self.welcome = welcome
        for device_id in welcome.accepted:
            pending = trying.get(device_id)
            if pending is not None:
                self._adopt(device_id, pending)
        for device_id, reason in welcome.refused:
            log.warning("device %s refused by the coordinator: %s", device_id, reason)
            if reason == NOT_AUTHENTICATED and device_id not in trying:
                self._recoverable(device_id)
        self._notice(welcome.upgrade)
        return welcome

    def _recoverable(self, device_id: str) -> None:
        """A device refused under its current key: if the keystore holds a pending key
        not tried yet, the next handshake signs with it."""
        signer = self.signers.get(device_id)
        pending_of = getattr(signer, "pending", None)
        pending = pending_of() if pending_of is not None else None
        if pending is None:
            return
        tried = (device_id, str(getattr(pending, "public_key", "")))
        if tried in self._pending_tried:
            log.error(
                "device %s: the coordinator refuses both its key and its pending key; "
                "run `gpunet worker status` for what to do", device_id,
            )
            return
        self._pending_tried.add(tried)
        self._try_pending[device_id] = pending

    def _adopt(self, device_id: str, pending: DeviceSigner) -> None:
        """The coordinator accepted the pending key: finish the rotation on disk, and
        sign with it from now on."""
        signer = self.signers[device_id]
        adopt = getattr(signer, "adopt", None)
        if adopt is None:
            self.signers[device_id] = pending  # a static signer: use the accepted key
        elif adopt(pending):
            self.recovered.add(device_id)

    def _notice(self, upgrade: Upgrade) -> None:
        self.upgrade = upgrade
        if upgrade.state == "available":
            log.info("a newer agent is available: %s", upgrade.latest)
        elif upgrade.state == "required":
            log.warning("agent upgrade to %s required by %s", upgrade.latest, upgrade.required_by)
        if upgrade.state != "none" and self.on_upgrade is not None:
            self.on_upgrade(upgrade)

    def _check_bye(self, msg: dict[str, Any]) -> None:
        if msg["t"] == "bye":
            self.last_bye = str(msg.get("reason", ""))[:200]
            raise Refused(f"the coordinator said bye: {self.last_bye}")

    async def _read(self, link: Link, proofs: ProofDuty, commands: CommandDuty) -> None:
        while not self._stop.is_set():
            msg = await link.next()
            kind = msg["t"]
            if kind == "challenge":
                device_id, body = control.body_of(msg, limit=self.max_frame)
                if device_id in self.signers:
                    proofs.queue.put_nowait((device_id, Challenge.model_validate_json(body)))
            elif kind in ("open", "verdict", "error") and "device" in msg:
                link.resolve(("dev", control.device_id(msg["device"])), msg)
            elif kind == "error":
                self._error(link, msg)
            elif kind == "command":
                commands.queue.put_nowait(control.parse_command(msg))
            elif kind == "command_result":
                link.resolve(("cmd", str(msg.get("id"))), msg)
            elif kind == "pong":
                link.resolve(("ping", msg.get("id")), msg)
            elif kind == "ping":
                link.send({"t": "pong", "id": msg.get("id"), "ts": msg.get("ts")})
            elif kind == "bye":
                self.last_bye = str(msg.get("reason", ""))[:200]
                log.info("coordinator closed the session: %s", self.last_bye)
                return
            else:
                raise ProtocolError(f"unexpected message {kind[:32]!r}")

    def _error(self, link: Link, msg: dict[str, Any]) -> None:
        """An error naming a device (`ref`: a refused commitment or openings, a device the
        coordinator let go) ends that device's exchange, which would otherwise wait for
        a reply that never comes and hold the device busy until the session drops."""
        ref = msg.get("ref")
        named = isinstance(ref, str) and ref in self.signers
        if named and link.resolve(("dev", str(ref)), msg):
            return
        log.warning("coordinator error%s: %s", f" for {ref}" if named else "",
                    str(msg.get("message"))[:200])

    def _outcome(self, device_id: str, outcome: ProofOutcome) -> None:
        self.outcomes[device_id] = outcome
        if self.on_outcome is not None:
            self.on_outcome(device_id, outcome)


__all__ = ["ControlClient", "Duty", "Endpoint", "Refused"]
