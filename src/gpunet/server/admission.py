"""Admission control: owners and devices are served ahead of anonymous callers (issue 8).

One event loop serves every request of a worker process. Under a flood of anonymous
requests, an owner's request waits, at each of its steps (routing, each hop to a worker
thread and back, the response), behind every flood request the loop runs in between;
before this gate an honest write went from p99 16 ms to 1-2 s (BENCHMARKS.md). The
gate bounds how much anonymous work can run between two steps of an honest request:

- A request is classified from its headers alone, before routing and before any
  database read: *priority* when it carries a credential that passes the checks that
  cost nothing but CPU (below), *anonymous* otherwise.
- Priority requests go straight on.
- Anonymous requests pass one lane: at most `slots` of them in the app at once, and at
  most one entering per turn of the event loop, so each turn runs one step of every
  honest request in flight and at most one new anonymous request. When `queue` are
  already waiting, the next is shed: answered 503 with Retry-After without entering
  the app, at the cost of parsing its headers. A waiting request costs its connection
  and nothing else; its body is read before it takes a slot, so a slow sender never
  holds one.
- A shed answer goes out after a short pause (`shed_pause_s`). uvicorn reads nothing
  more from a connection while its request is unanswered, so a flooder's connection
  that is refused at once would come straight back and be parsed and shed again in
  every turn of the loop; paused, it costs a few parses a second instead.

What a forged "credential-looking" header can buy, and why it is little:

- Our own owner access tokens are verified in full here (HMAC signature, issuer,
  audience, type, expiry against the app's clock; tens of microseconds): only a token
  this coordinator issued gets priority. One whose session was revoked still looks
  valid until it expires, but the first 401 the app gives it demotes its session.
- A device signature cannot be checked without the database (the device's key) and
  the body (which the signature covers), nor an identity provider's token without its
  keys: these get *provisional* priority when well-formed (a device's also timestamped
  within the signature window). The app checks them in full; a provisional credential
  answered 401 demotes its address (an IPv6 /64 as one) to the anonymous lane for
  `demote_s`. A forger thus gets one priority request per address per period, then
  queues with everyone else. Demotions are kept in a bounded table; while it is full,
  no provisional credential gets priority at all (fail closed: verified owner tokens
  keep theirs, honest devices wait with the anonymous until it drains).
- One principal (an owner, a device id, a subject of the identity provider) has at
  most `per_principal` requests in flight with priority; more go to the anonymous
  lane. A valid token, the attacker's own account's included, buys a few concurrent
  requests, never the server; its writes still meet the per-principal rate limits.

Counted per worker process: with several workers each has its own lane.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import jwt
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpunet.core import signing
from gpunet.core.clock import Clock
from gpunet.core.errors import Unauthenticated
from gpunet.server.security.oidc import OidcVerifier
from gpunet.server.security.tokens import AccessTokens
from gpunet.server.services.ratelimit import address_key, forwarded_address

# Probes a load balancer must always get through (cheap: no database, no body).
UNGATED = frozenset({"/healthz"})
SHED_RETRY_AFTER_S = 1
SHED_ENDPOINT = "shed"  # the `endpoint` label of shed requests in /metrics
SHED_PAUSE_S = 0.25
# Paused sheds at once (a sleeping task each); past this many, sheds go out at once.
MAX_PAUSED_SHEDS = 10_000
# While an owner's or a device's request is in flight, anonymous requests enter at most
# one per this gap (500 a second): well above what one worker serves when it is not
# saturated, and under a flood it leaves honest requests most of the loop.
PRIORITY_GAP_S = 0.002
# Demoted addresses and sessions remembered at once (about 100 bytes each).
DEMOTIONS_CAPACITY = 100_000


@dataclass(frozen=True, slots=True)
class Credential:
    """Who a request says it is, as far as its headers show without the database."""

    principal: str  # what `per_principal` counts: "owner:12", "device:dev_...", ...
    demote_key: str  # what a 401 demotes: the session of a verified token, else the address
    provisional: bool = False  # well-formed only: the app has yet to check it in full


class Classifier:
    """Priority or not, from the Authorization header and the client address alone."""

    def __init__(
        self,
        *,
        tokens: AccessTokens,
        clock: Clock,
        signature_window_s: int,
        oidc: OidcVerifier | None = None,
        metrics_token: str | None = None,
    ) -> None:
        self._tokens = tokens
        self._clock = clock
        self._window_s = signature_window_s
        self._oidc = oidc
        self._metrics_token = metrics_token.encode() if metrics_token else None

    def credential(self, authorization: str, address: str | None) -> Credential | None:
        scheme, _, value = authorization.partition(" ")
        if scheme == "GPUNet-Device":
            return self._device(authorization, address)
        if scheme.lower() != "bearer" or not value or len(value) > 8192:
            return None
        token = value.strip()
        if self._metrics_token is not None and hmac.compare_digest(
            token.encode(), self._metrics_token
        ):
            return Credential("operator:metrics", "operator:metrics")
        if self._tokens.is_ours(token):
            try:
                claims = self._tokens.verify(token, self._clock.now())
            except Unauthenticated:
                return None
            return Credential(f"owner:{claims.owner_id}", f"session:{claims.session_id}")
        if self._oidc is not None and self._oidc.claims_issuer(token):
            subject = _unverified_subject(token)
            return Credential(f"oidc:{subject}", f"address:{address_key(address)}", True)
        return None

    def _device(self, header: str, address: str | None) -> Credential | None:
        auth = signing.parse_auth_header(header)
        if auth is None or abs(auth.timestamp - self._clock.now().timestamp()) > self._window_s:
            return None
        return Credential(f"device:{auth.device_id}", f"address:{address_key(address)}", True)


def _unverified_subject(token: str) -> str:
    try:
        sub = jwt.decode(token, options={"verify_signature": False}).get("sub")
    except jwt.PyJWTError:
        return "?"
    return str(sub)[:128]


class Demotions:
    """Keys (addresses, sessions) whose credentials lost priority, each for `period_s`.

    Bounded: while `capacity` keys are demoted, `full` is true and the gate gives no
    provisional credential priority, rather than forget a forger to make room.
    """

    def __init__(
        self, period_s: float, capacity: int, now: Callable[[], float] = time.monotonic
    ) -> None:
        self._period_s = period_s
        self._capacity = capacity
        self._now = now
        self._until: dict[str, float] = {}  # insertion order is expiry order

    def _expire(self) -> None:
        now = self._now()
        while self._until:
            key, until = next(iter(self._until.items()))
            if until > now:
                return
            del self._until[key]

    def demote(self, key: str) -> None:
        self._expire()
        self._until.pop(key, None)
        if len(self._until) < self._capacity:
            self._until[key] = self._now() + self._period_s

    def is_demoted(self, key: str) -> bool:
        until = self._until.get(key)
        if until is None:
            return False
        if until <= self._now():
            self._expire()
            return False
        return True

    @property
    def full(self) -> bool:
        self._expire()
        return len(self._until) >= self._capacity


class AnonymousLane:
    """At most `slots` anonymous requests in the app and at most `queue` waiting; they
    enter one per turn of the event loop, or one per `gap_s` while a priority request
    is in flight. `enter` says False when the request is shed."""

    def __init__(
        self, slots: int, queue: int, *, gap_s: float = PRIORITY_GAP_S, max_wait_s: float = 5.0
    ) -> None:
        self._slots = slots
        self._queue = queue
        self._gap_s = gap_s
        self._max_wait_s = max_wait_s
        self._busy = 0
        self._priority = 0
        self._last_entry = -float("inf")
        self._waiting: deque[asyncio.Future[None]] = deque()
        self._dispatch: asyncio.Handle | None = None

    @property
    def busy(self) -> int:
        return self._busy

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def full(self) -> bool:
        return len(self._waiting) >= self._queue

    async def enter(self) -> bool:
        if self.full():
            return False
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        self._schedule()
        try:
            async with asyncio.timeout(self._max_wait_s):
                await waiter
        except TimeoutError:
            self._forget(waiter)
            return False
        except asyncio.CancelledError:
            self._forget(waiter)
            raise
        return True

    def leave(self) -> None:
        self._busy -= 1
        self._schedule()

    def priority_started(self) -> None:
        self._priority += 1

    def priority_finished(self) -> None:
        self._priority -= 1
        if self._priority == 0 and isinstance(self._dispatch, asyncio.TimerHandle):
            self._dispatch.cancel()  # no longer held back: the next turn may admit
            self._dispatch = None
            self._schedule()

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        if waiter.done() and not waiter.cancelled():
            self.leave()  # admitted in the same turn it gave up: give the slot back
        else:
            waiter.cancel()
            if waiter in self._waiting:
                self._waiting.remove(waiter)

    def _schedule(self) -> None:
        if self._dispatch is not None or not self._waiting or self._busy >= self._slots:
            return
        loop = asyncio.get_running_loop()
        if self._priority and loop.time() < self._last_entry + self._gap_s:
            self._dispatch = loop.call_at(self._last_entry + self._gap_s, self._admit)
        else:
            # call_soon runs in the loop's next turn, after everything already ready:
            # that puts a turn's worth of honest steps between two admissions.
            self._dispatch = loop.call_soon(self._admit)

    def _admit(self) -> None:
        self._dispatch = None
        while self._waiting and self._busy < self._slots:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                self._busy += 1
                self._last_entry = asyncio.get_running_loop().time()
                break
        self._schedule()


class AdmissionGate:
    """The ASGI middleware: classify, then send priority on and anonymous through the lane."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        classifier: Classifier,
        lane: AnonymousLane,
        demotions: Demotions,
        per_principal: int,
        trusted_proxies: frozenset[str] = frozenset(),
        shed_pause_s: float = SHED_PAUSE_S,
    ) -> None:
        self.app = app
        self.classifier = classifier
        self.lane = lane
        self.demotions = demotions
        self.per_principal = per_principal
        self.trusted_proxies = trusted_proxies
        self.shed_pause_s = shed_pause_s
        self.in_flight: dict[str, int] = {}
        self.paused_sheds = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNGATED:
            await self.app(scope, receive, send)
            return
        credential = self._priority_credential(scope)
        if credential is None:
            await self._anonymous(scope, receive, send)
        else:
            await self._priority(credential, scope, receive, send)

    def _priority_credential(self, scope: Scope) -> Credential | None:
        authorization = forwarded = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                forwarded = value.decode("latin-1")
        if not authorization:
            return None
        peer = scope["client"][0] if scope.get("client") else None
        address = forwarded_address(peer, forwarded, self.trusted_proxies)
        credential = self.classifier.credential(authorization, address)
        if credential is None or self.demotions.is_demoted(credential.demote_key):
            return None
        if credential.provisional and self.demotions.full:
            return None
        if self.in_flight.get(credential.principal, 0) >= self.per_principal:
            return None
        return credential

    async def _priority(
        self, credential: Credential, scope: Scope, receive: Receive, send: Send
    ) -> None:
        async def watched_send(message: Message) -> None:
            # The app's full check refused what the headers promised: no more priority
            # for this address (or revoked session) for a while.
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.demotions.demote(credential.demote_key)
            await send(message)

        key = credential.principal
        self.in_flight[key] = self.in_flight.get(key, 0) + 1
        self.lane.priority_started()
        try:
            await self.app(scope, receive, watched_send)
        finally:
            self.lane.priority_finished()
            left = self.in_flight[key] - 1
            if left:
                self.in_flight[key] = left
            else:
                del self.in_flight[key]

    async def _anonymous(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.lane.full():
            if self.shed_pause_s > 0 and self.paused_sheds < MAX_PAUSED_SHEDS:
                self.paused_sheds += 1
                try:
                    await asyncio.sleep(self.shed_pause_s)
                finally:
                    self.paused_sheds -= 1
            await _shed(scope, send)
            return
        received = await _read_request(receive)
        replay = _replaying(received, receive)
        if received[-1]["type"] == "http.disconnect":
            await self.app(scope, replay, send)  # gone: the app gives up at once, no slot
            return
        if not await self.lane.enter():
            await _shed(scope, send)
            return
        try:
            await self.app(scope, replay, send)
        finally:
            self.lane.leave()


async def _read_request(receive: Receive) -> list[Message]:
    """The whole request body (its size is limited by the middleware outside this one)."""
    messages = [await receive()]
    while messages[-1]["type"] == "http.request" and messages[-1].get("more_body", False):
        messages.append(await receive())
    return messages


def _replaying(messages: list[Message], receive: Receive) -> Receive:
    pending = deque(messages)

    async def replay() -> Message:
        return pending.popleft() if pending else await receive()

    return replay


async def _shed(scope: Scope, send: Send) -> None:
    # Counted in /metrics under its own endpoint label (server.middleware reads it).
    scope.setdefault("state", {})["endpoint"] = SHED_ENDPOINT
    body = json.dumps(
        {
            "error": {
                "code": "overloaded",
                "message": "the coordinator is serving signed-in callers first; retry shortly",
            }
        }
    ).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"retry-after", str(SHED_RETRY_AFTER_S).encode()),
    ]
    await send({"type": "http.response.start", "status": 503, "headers": headers})
    await send({"type": "http.response.body", "body": body})
