"""Admission control (server/admission.py): owners and devices ahead of anonymous callers.

Every test drives the gate on one event loop with an app whose requests finish only
when the test says so, and checks who entered, in which order and turn, and who was
shed; nothing here measures time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gpunet.core.clock import FrozenClock, unix
from gpunet.core.signing import DeviceSigner
from gpunet.server.admission import (
    AdmissionGate,
    AnonymousLane,
    Classifier,
    Demotions,
)
from gpunet.server.metrics import Metrics
from gpunet.server.middleware import LimitsAndMetrics
from gpunet.server.security.principal import ALL_SCOPES
from gpunet.server.security.tokens import AccessTokens

ISSUER = "http://coordinator.test"
HOLD = 3600.0  # a gap no test outlives: anonymous entries held while priority runs


class World:
    """A gate over an app whose requests each wait for `finish(name)`."""

    def __init__(
        self,
        *,
        slots: int = 1,
        queue: int = 1,
        per_principal: int = 4,
        gap_s: float = 0.0,
        max_wait_s: float = 60.0,
        demotions_capacity: int = 100,
    ) -> None:
        self.clock = FrozenClock()
        self.tokens = AccessTokens(b"k" * 32, ISSUER, 900)
        self.monotonic = 0.0
        self.lane = AnonymousLane(slots, queue, gap_s=gap_s, max_wait_s=max_wait_s)
        self.demotions = Demotions(300, demotions_capacity, now=lambda: self.monotonic)
        self.gate = AdmissionGate(
            self.app,
            classifier=Classifier(tokens=self.tokens, clock=self.clock, signature_window_s=120),
            lane=self.lane,
            demotions=self.demotions,
            per_principal=per_principal,
            shed_pause_s=0,
        )
        self.entered: list[str] = []
        self.turns: dict[str, int] = {}
        self.turn = 0
        self._done: dict[str, asyncio.Event] = {}
        self._answer: dict[str, int] = {}

    async def app(self, scope: Any, receive: Any, send: Any) -> None:
        name = scope["path"].rsplit("/", 1)[1]
        body = await receive()
        assert body["type"] == "http.request"
        self.entered.append(name)
        self.turns[name] = self.turn
        await self._done[name].wait()
        await send({"type": "http.response.start", "status": self._answer[name], "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    def request(
        self,
        name: str,
        authorization: str | None = None,
        *,
        client: str = "203.0.113.7",
        answer: int = 200,
        body_arrives: asyncio.Event | None = None,
        app: Callable[[Any, Any, Any], Awaitable[None]] | None = None,
    ) -> asyncio.Task[tuple[int, dict[str, str], bytes]]:
        self._done[name] = asyncio.Event()
        self._answer[name] = answer
        headers = [(b"authorization", authorization.encode())] if authorization else []
        scope = {
            "type": "http",
            "method": "POST",
            "path": f"/api/v1/test/{name}",
            "headers": headers,
            "client": (client, 40000),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            if body_arrives is not None:
                await body_arrives.wait()
            return {"type": "http.request", "body": b"{}", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        async def run() -> tuple[int, dict[str, str], bytes]:
            await (app or self.gate)(scope, receive, send)
            start = sent[0]
            heads = {k.decode(): v.decode() for k, v in start["headers"]}
            return start["status"], heads, b"".join(m.get("body", b"") for m in sent[1:])

        return asyncio.get_running_loop().create_task(run())

    def finish(self, name: str) -> None:
        self._done[name].set()

    def owner_token(self, owner_id: int = 1, session: str = "s1") -> str:
        token = self.tokens.issue(
            owner_id=owner_id, session_id=session, scopes=ALL_SCOPES, now=self.clock.now()
        )
        return f"Bearer {token}"

    def device_signature(self, device_id: str = "dev_abcdefghijklmnop", skew_s: int = 0) -> str:
        signer = DeviceSigner(device_id, Ed25519PrivateKey.generate())
        return signer.authorization("POST", "/x", b"{}", unix(self.clock.now()) + skew_s)


async def settle() -> None:
    """Let every request go as far as it can without the test's help."""
    for _ in range(20):
        await asyncio.sleep(0)


def run(test: Callable[[], Awaitable[None]]) -> None:
    # A generous bound so that a broken gate fails the test instead of hanging it.
    asyncio.run(asyncio.wait_for(test(), 60))


async def fill_the_lane(w: World) -> None:
    """One anonymous request in the app (slots=1), one waiting (queue=1)."""
    w.request("a1")
    await settle()
    w.request("a2")
    await settle()


def test_anonymous_past_the_waiting_room_are_shed_at_once() -> None:
    async def scenario() -> None:
        w = World(slots=1, queue=1)
        await fill_the_lane(w)
        shed = w.request("a3")
        status, headers, body = await shed
        assert status == 503
        assert headers["retry-after"] == "1"
        assert json.loads(body)["error"]["code"] == "overloaded"
        assert w.entered == ["a1"]  # a2 waits; a3 never reached the app
        w.finish("a1")
        await settle()
        assert w.entered == ["a1", "a2"]
        w.finish("a2")

    run(scenario)


def test_an_owner_goes_straight_in_while_the_anonymous_lane_is_full() -> None:
    async def scenario() -> None:
        w = World(slots=1, queue=1)
        await fill_the_lane(w)
        owner = w.request("owner", w.owner_token())
        await settle()
        assert w.entered == ["a1", "owner"]
        w.finish("owner")
        assert (await owner)[0] == 200

    run(scenario)


def test_anonymous_requests_enter_one_per_turn_of_the_loop() -> None:
    async def scenario() -> None:
        w = World(slots=8, queue=8)
        ticking = True

        def tick() -> None:
            w.turn += 1
            if ticking:
                asyncio.get_running_loop().call_soon(tick)

        tick()
        for i in range(6):
            w.request(f"a{i}")
        await settle()
        ticking = False
        assert len(w.entered) == 6
        turns = [w.turns[n] for n in w.entered]
        assert len(set(turns)) == 6, turns  # never two in one turn

    run(scenario)


def test_while_an_owner_is_served_anonymous_entries_wait_for_the_gap() -> None:
    async def scenario() -> None:
        w = World(slots=4, queue=4, gap_s=HOLD)
        owner = w.request("owner", w.owner_token())
        await settle()
        w.request("a1")
        w.request("a2")
        await settle()
        # One enters (none had for a gap), the next waits for the gap or the owner.
        assert w.entered == ["owner", "a1"]
        w.finish("owner")
        await owner
        await settle()
        assert w.entered == ["owner", "a1", "a2"]

    run(scenario)


def test_a_forged_owner_token_is_anonymous() -> None:
    async def scenario() -> None:
        w = World(slots=1, queue=1)
        other = AccessTokens(b"not-the-coordinators-key" * 2, ISSUER, 900)
        forged = other.issue(owner_id=1, session_id="s", scopes=ALL_SCOPES, now=w.clock.now())
        await fill_the_lane(w)
        assert (await w.request("forged", f"Bearer {forged}"))[0] == 503
        token = w.owner_token()
        w.clock.advance(901)  # and a genuine token past its expiry buys nothing either
        expired = w.request("expired", token)
        assert (await expired)[0] == 503

    run(scenario)


def test_a_forged_device_signature_gets_priority_once_per_address() -> None:
    async def scenario() -> None:
        w = World(slots=1, queue=1)
        await fill_the_lane(w)
        # Well formed and timely: provisional priority, until the app refuses it.
        first = w.request("forged1", w.device_signature(), answer=401)
        await settle()
        assert w.entered[-1] == "forged1"
        w.finish("forged1")
        assert (await first)[0] == 401
        # Its address now waits with the anonymous (here: shed, the lane is full).
        assert (await w.request("forged2", w.device_signature()))[0] == 503
        # An IPv6 address counts as its /64.
        v6 = w.request("v6a", w.device_signature(), client="2001:db8::1", answer=401)
        await settle()
        w.finish("v6a")
        assert (await v6)[0] == 401
        again = w.request("v6b", w.device_signature(), client="2001:db8::ffff")
        assert (await again)[0] == 503
        # Another address, and the same one once the demotion has run out, get priority.
        honest = w.request("honest", w.device_signature(), client="198.51.100.9")
        w.monotonic += 301
        later = w.request("later", w.device_signature())
        await settle()
        assert w.entered[-2:] == ["honest", "later"]
        w.finish("honest")
        w.finish("later")
        assert [(await honest)[0], (await later)[0]] == [200, 200]

    run(scenario)


def test_a_device_signature_outside_the_window_is_anonymous() -> None:
    async def scenario() -> None:
        w = World(slots=1, queue=1)
        await fill_the_lane(w)
        stale = w.request("stale", w.device_signature(skew_s=-121))
        assert (await stale)[0] == 503

    run(scenario)


def test_a_refused_session_loses_priority_but_the_owners_other_sessions_keep_it() -> None:
    async def scenario() -> None:
        w = World(slots=1, queue=1)
        await fill_the_lane(w)
        revoked = w.request("revoked", w.owner_token(session="old"), answer=401)
        await settle()
        w.finish("revoked")
        assert (await revoked)[0] == 401
        assert (await w.request("again", w.owner_token(session="old")))[0] == 503
        fresh = w.request("fresh", w.owner_token(session="new"))
        await settle()
        w.finish("fresh")
        assert (await fresh)[0] == 200

    run(scenario)


def test_one_principal_gets_only_its_share_of_priority() -> None:
    async def scenario() -> None:
        w = World(slots=1, queue=1, per_principal=2)
        await fill_the_lane(w)
        mine = [w.request(f"o{i}", w.owner_token(owner_id=1)) for i in range(2)]
        await settle()
        # A third request of owner 1 is anonymous (shed), owner 2's is not.
        assert (await w.request("o2", w.owner_token(owner_id=1)))[0] == 503
        theirs = w.request("p0", w.owner_token(owner_id=2))
        await settle()
        assert w.entered[-3:] == ["o0", "o1", "p0"]
        for name in ("o0", "o1", "p0"):
            w.finish(name)
        await asyncio.gather(*mine, theirs)
        # Its requests done, owner 1 has its share again.
        again = w.request("o3", w.owner_token(owner_id=1))
        await settle()
        w.finish("o3")
        assert (await again)[0] == 200

    run(scenario)


def test_with_the_demotion_table_full_no_provisional_credential_gets_priority() -> None:
    async def scenario() -> None:
        w = World(slots=1, queue=1, demotions_capacity=1)
        await fill_the_lane(w)
        forged = w.request("forged", w.device_signature(), answer=401)
        await settle()
        w.finish("forged")
        await forged
        elsewhere = w.request("elsewhere", w.device_signature(), client="198.51.100.9")
        assert (await elsewhere)[0] == 503  # fail closed, not "forget a forger"
        owner = w.request("owner", w.owner_token())
        await settle()
        w.finish("owner")
        assert (await owner)[0] == 200  # verified tokens keep their priority

    run(scenario)


def test_a_slow_body_takes_no_place_in_the_lane() -> None:
    async def scenario() -> None:
        w = World(slots=1, queue=2)
        arrives = asyncio.Event()
        slow = w.request("slow", body_arrives=arrives)
        quick = w.request("quick")
        await settle()
        assert w.entered == ["quick"]  # the slow sender holds its connection, no slot
        w.finish("quick")
        assert (await quick)[0] == 200
        arrives.set()
        await settle()
        w.finish("slow")
        assert (await slow)[0] == 200
        assert w.lane.busy == 0 and w.lane.waiting == 0

    run(scenario)


def test_a_request_that_waits_too_long_is_shed() -> None:
    async def scenario() -> None:
        w = World(slots=1, queue=2, max_wait_s=0)
        w.request("a1")
        await settle()
        assert (await w.request("a2"))[0] == 503
        assert w.lane.waiting == 0
        w.finish("a1")

    run(scenario)


def test_a_shed_request_is_counted_in_metrics_with_the_security_headers() -> None:
    async def scenario() -> None:
        w = World(slots=1, queue=1)
        metrics = Metrics()
        outer = LimitsAndMetrics(w.gate, metrics, hsts=True)
        await fill_the_lane(w)
        status, headers, _ = await w.request("a3", app=outer)
        assert status == 503
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["cache-control"] == "no-store"
        value = metrics.registry.get_sample_value(
            "gpunet_requests_total",
            {"endpoint": "shed", "method": "POST", "status": "503", "principal": "anonymous"},
        )
        assert value == 1.0

    run(scenario)


def test_demotions_expire_in_order() -> None:
    now = [0.0]
    d = Demotions(10, 3, now=lambda: now[0])
    d.demote("a")
    now[0] = 5
    d.demote("b")
    assert d.is_demoted("a") and d.is_demoted("b") and not d.full
    now[0] = 10
    assert not d.is_demoted("a") and d.is_demoted("b")
    d.demote("c")
    d.demote("d")
    assert d.full
    now[0] = 15
    assert not d.full
