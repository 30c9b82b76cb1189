"""The control channel's wire protocol: frames, messages, auth bytes, version policy.

One long-lived TCP session per host carries everything between an agent and the
coordinator after enrollment: heartbeats, pushed proof-of-GPU challenges and cluster
commands, both ways, with no polling. This module is pure (no sockets, no event loop)
so that both ends and the tests share one definition.

Framing: a 4-byte big-endian length, then that many bytes of msgpack (a map whose
key "t" names the message). A frame longer than MAX_FRAME is refused before a byte of
it is buffered: a hostile peer cannot make the other end allocate more than that.

Session, in order:

    server  hello    {nonce, server, time, proto: [min, max]}
    agent   auth     {proto: [min, max], agent: version, devices: [[device_id, sig], ...]}
    server  welcome  {proto, session, accepted, refused: [[id, reason]], hb, upgrade}
    then, in any order:
    agent   hb       {seq, d?: [device ids]}         no reply; d omitted = every accepted device
    server  challenge  {device, body: Challenge JSON}
    agent   commitment {device, body: CommitmentEnvelope JSON}
    server  open       {device, body: OpeningRequest JSON}   or verdict
    agent   openings   {device, challenge, part, last, body: bytes}   one or more
    server  verdict    {device, VerdictMessage fields: challenge, passed, reason, detail,
                        status}
    either  command {id, name, args} -> command_result {id, ok, result | error}
    either  ping {id, ts} -> pong {id, ts}; bye {reason}; error {code, message, ref?}

Proof-of-GPU messages are the core models (core.pog.messages) that HTTP carries too,
parsed by both transports with the same rules. The commitment, the rows to open and
the verdict are small and travel as the models' JSON. The opening response is
megabytes at the real profiles' sizes (far above MAX_FRAME), so it travels in its
binary layout (core.pog.wire) cut into parts of at most OPENINGS_PART bytes, numbered
from 0, the last one marked. The coordinator reassembles them per device, in order,
up to the largest opening its catalog can ask for (`OpeningsAssembler`): parts out of
order, or more bytes than that, end the session. Memory per session is bounded by
one opening per device.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import importlib
import json
import re
import struct
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

# msgpack is a declared dependency; compact JSON keeps this module working without it.
_msgpack: Any = None
with contextlib.suppress(ImportError):
    _msgpack = importlib.import_module("msgpack")

PROTOCOL_MIN = 1
PROTOCOL_MAX = 1
AUTH_CONTEXT = b"gpunet-control-auth-v1"
NONCE_BYTES = 32
MAX_FRAME = 1 << 20  # 1 MiB: the largest frame either end accepts
MAX_DEVICES_PER_SESSION = 64  # as many GPUs as one host may report
OPENINGS_PART = 512 * 1024  # bytes of openings per frame: half a frame, room to spare
_HEADER = struct.Struct(">I")
_DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")
_VERSION_RE = re.compile(r"^[0-9A-Za-z.+_-]{1,32}$")
_CHALLENGE_ID_RE = re.compile(r"^[A-Za-z0-9_-]{8,64}$")  # core.pog.messages.ChallengeId

CLIENT_TYPES = frozenset(
    {"auth", "hb", "commitment", "openings", "command", "command_result", "ping", "pong", "bye"}
)
SERVER_TYPES = frozenset(
    {
        "hello",
        "welcome",
        "challenge",
        "open",
        "verdict",
        "command",
        "command_result",
        "ping",
        "pong",
        "bye",
        "error",
    }
)


class ProtocolError(ValueError):
    """The peer broke the protocol; the session ends with `reason` (short, safe to send)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- framing ----------------------------------------------------------------------------


def encode_payload(message: Mapping[str, Any]) -> bytes:
    if _msgpack is not None:
        data: bytes = _msgpack.packb(message, use_bin_type=True)
        return data
    return json.dumps(message, separators=(",", ":")).encode()


def decode_payload(data: bytes) -> dict[str, Any]:
    """Parse one payload into a message map; ProtocolError for anything else."""
    try:
        if _msgpack is not None:
            # The payload is already bounded by the frame limit; strict keys refuse
            # maps keyed by anything but strings and bytes.
            value = _msgpack.unpackb(data, raw=False, strict_map_key=True)
        else:
            value = json.loads(data)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise ProtocolError("frame is not a valid message") from exc
    if not isinstance(value, dict) or not isinstance(value.get("t"), str):
        raise ProtocolError("a message is a map with a type")
    return value


def encode(message: Mapping[str, Any], *, max_frame: int = MAX_FRAME) -> bytes:
    payload = encode_payload(message)
    if len(payload) > max_frame:
        raise ProtocolError(f"message of {len(payload)} bytes exceeds the frame limit")
    return _HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, take whole messages out.

    The length is checked as soon as the 4-byte header is in, so an oversized frame is
    refused without buffering it.
    """

    __slots__ = ("_buf", "max_frame")

    def __init__(self, max_frame: int = MAX_FRAME) -> None:
        self._buf = bytearray()
        self.max_frame = max_frame

    @property
    def pending(self) -> int:
        return len(self._buf)

    def feed(self, data: bytes) -> list[dict[str, Any]]:
        """Every whole message now buffered, in order (eager, so that nothing is left
        half-consumed if the caller stops early). ProtocolError on the first bad frame."""
        buf = self._buf
        buf += data
        out: list[dict[str, Any]] = []
        pos, end = 0, len(buf)
        try:
            while end - pos >= 4:
                (size,) = _HEADER.unpack_from(buf, pos)
                if size > self.max_frame:
                    raise ProtocolError(f"frame of {size} bytes exceeds the limit")
                if end - pos - 4 < size:
                    break
                start = pos + 4
                pos = start + size
                out.append(decode_payload(bytes(buf[start:pos])))
        finally:
            del buf[:pos]
        return out


# -- authentication bytes -----------------------------------------------------------------


def auth_message(*, server_id: str, nonce: bytes, device_id: str) -> bytes:
    """What each device key signs to join a session.

    SECURITY: the nonce is fresh per session (a signature from an old session is
    useless on a new one); the device id binds the signature to one device (it cannot
    be moved to another device's entry); the server id is the coordinator the agent
    means to talk to (its own configuration, not the hello's claim), so a signature
    obtained by a rogue server cannot be relayed to the real one under another name.
    """
    return b"\n".join([AUTH_CONTEXT, server_id.encode(), nonce.hex().encode(), device_id.encode()])


# -- versions ---------------------------------------------------------------------------


def negotiate(server: tuple[int, int], agent: tuple[int, int]) -> int | None:
    """The highest protocol version both sides speak, or None if the ranges are disjoint."""
    low, high = max(server[0], agent[0]), min(server[1], agent[1])
    return high if low <= high else None


def parse_version(text: str) -> tuple[int, ...]:
    """'1.2.3' -> (1, 2, 3); pre-release suffixes are ignored ('1.3.0rc1' -> (1, 3, 0))."""
    parts = []
    for piece in text.split("."):
        m = re.match(r"\d+", piece)
        if m is None:
            break
        parts.append(int(m.group()))
    return tuple(parts) or (0,)


UpgradeState = Literal["none", "available", "required", "refused"]


@dataclass(frozen=True, slots=True)
class UpgradePolicy:
    """What the operator asks of agents.

    `latest`: the current release (older agents hear "upgrade available").
    `minimum`/`required_by`: agents older than `minimum` hear "upgrade required by
    <date>" and are refused only after that date. T6: an old agent is never cut off
    at once; a minimum without a date is only ever a notice.
    """

    latest: str
    minimum: str | None = None
    required_by: dt.datetime | None = None


@dataclass(frozen=True, slots=True)
class Upgrade:
    state: UpgradeState
    latest: str
    required_by: dt.datetime | None = None

    def wire(self) -> dict[str, Any]:
        by = self.required_by.isoformat() if self.required_by else None
        return {"state": self.state, "latest": self.latest, "by": by}

    @classmethod
    def from_wire(cls, value: Any) -> Upgrade:
        if not isinstance(value, dict) or value.get("state") not in (
            "none",
            "available",
            "required",
            "refused",
        ):
            raise ProtocolError("malformed upgrade notice")
        by = value.get("by")
        try:
            when = dt.datetime.fromisoformat(by) if isinstance(by, str) else None
        except ValueError as exc:
            raise ProtocolError("malformed upgrade date") from exc
        return cls(value["state"], str(value.get("latest", ""))[:32], when)


def decide_upgrade(agent_version: str, policy: UpgradePolicy, now: dt.datetime) -> Upgrade:
    mine = parse_version(agent_version)
    if policy.minimum is not None and mine < parse_version(policy.minimum):
        if policy.required_by is None:
            return Upgrade("available", policy.latest)
        state: UpgradeState = "refused" if now >= policy.required_by else "required"
        return Upgrade(state, policy.latest, policy.required_by)
    if mine < parse_version(policy.latest):
        return Upgrade("available", policy.latest)
    return Upgrade("none", policy.latest)


# -- message validation (hostile input on both ends) ------------------------------------


def _field(msg: Mapping[str, Any], name: str, kind: type | tuple[type, ...]) -> Any:
    value = msg.get(name)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ProtocolError(f"{msg.get('t')}: field {name!r} is missing or mistyped")
    return value


def device_id(value: Any) -> str:
    if not isinstance(value, str) or not _DEVICE_ID_RE.match(value):
        raise ProtocolError("not a valid device id")
    return value


def version_range(value: Any) -> tuple[int, int]:
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        or not 0 < value[0] <= value[1] < 1 << 16
    ):
        raise ProtocolError("protocol range must be [min, max]")
    return int(value[0]), int(value[1])


@dataclass(frozen=True, slots=True)
class Hello:
    nonce: bytes
    server_id: str
    time: float
    protocols: tuple[int, int]

    def wire(self) -> dict[str, Any]:
        return {
            "t": "hello",
            "nonce": self.nonce,
            "server": self.server_id,
            "time": self.time,
            "proto": list(self.protocols),
        }

    @classmethod
    def parse(cls, msg: Mapping[str, Any]) -> Hello:
        if msg.get("t") != "hello":
            raise ProtocolError("expected hello")
        nonce = _field(msg, "nonce", bytes)
        server = _field(msg, "server", str)
        if len(nonce) != NONCE_BYTES or not 0 < len(server) <= 255:
            raise ProtocolError("hello: bad nonce or server id")
        return cls(nonce, server, float(_field(msg, "time", (int, float))),
                   version_range(msg.get("proto")))


@dataclass(frozen=True, slots=True)
class Auth:
    protocols: tuple[int, int]
    agent_version: str
    devices: tuple[tuple[str, bytes], ...]

    def wire(self) -> dict[str, Any]:
        return {
            "t": "auth",
            "proto": list(self.protocols),
            "agent": self.agent_version,
            "devices": [[d, s] for d, s in self.devices],
        }

    @classmethod
    def parse(cls, msg: Mapping[str, Any]) -> Auth:
        if msg.get("t") != "auth":
            raise ProtocolError("expected auth")
        agent = _field(msg, "agent", str)
        if not _VERSION_RE.match(agent):
            raise ProtocolError("auth: bad agent version")
        entries = _field(msg, "devices", list)
        if not 0 < len(entries) <= MAX_DEVICES_PER_SESSION:
            raise ProtocolError(f"auth: 1 to {MAX_DEVICES_PER_SESSION} devices per session")
        devices = []
        for entry in entries:
            if not isinstance(entry, list | tuple) or len(entry) != 2:
                raise ProtocolError("auth: a device entry is [device_id, signature]")
            sig = entry[1]
            if not isinstance(sig, bytes) or len(sig) != 64:
                raise ProtocolError("auth: a signature is 64 bytes")
            devices.append((device_id(entry[0]), sig))
        if len({d for d, _ in devices}) != len(devices):
            raise ProtocolError("auth: a device is listed twice")
        return cls(version_range(msg.get("proto")), agent, tuple(devices))


@dataclass(frozen=True, slots=True)
class Welcome:
    protocol: int
    session: str
    accepted: tuple[str, ...]
    refused: tuple[tuple[str, str], ...]
    heartbeat_s: float
    upgrade: Upgrade

    def wire(self) -> dict[str, Any]:
        return {
            "t": "welcome",
            "proto": self.protocol,
            "session": self.session,
            "accepted": list(self.accepted),
            "refused": [[d, r] for d, r in self.refused],
            "hb": self.heartbeat_s,
            "upgrade": self.upgrade.wire(),
        }

    @classmethod
    def parse(cls, msg: Mapping[str, Any]) -> Welcome:
        if msg.get("t") != "welcome":
            raise ProtocolError("expected welcome")
        refused = []
        for entry in _field(msg, "refused", list):
            if not isinstance(entry, list | tuple) or len(entry) != 2:
                raise ProtocolError("welcome: bad refusal")
            refused.append((device_id(entry[0]), str(entry[1])[:200]))
        hb = float(_field(msg, "hb", (int, float)))
        if not 0.01 <= hb <= 3600:
            raise ProtocolError("welcome: heartbeat interval out of range")
        return cls(
            int(_field(msg, "proto", int)),
            str(_field(msg, "session", str))[:64],
            tuple(device_id(d) for d in _field(msg, "accepted", list)),
            tuple(refused),
            hb,
            Upgrade.from_wire(msg.get("upgrade")),
        )


def heartbeat(seq: int, devices: list[str] | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"t": "hb", "seq": seq}
    if devices is not None:
        msg["d"] = devices
    return msg


def heartbeat_devices(msg: Mapping[str, Any]) -> list[str] | None:
    """The devices a heartbeat names, or None for "every device of the session"."""
    value = msg.get("d")
    if value is None:
        return None
    if not isinstance(value, list) or len(value) > MAX_DEVICES_PER_SESSION:
        raise ProtocolError("hb: d must be a list of device ids")
    return [device_id(v) for v in value]


def body_of(msg: Mapping[str, Any], *, limit: int = MAX_FRAME) -> tuple[str, bytes]:
    """(device id, JSON body) of a proof message."""
    body = _field(msg, "body", (bytes, str))
    if isinstance(body, str):
        body = body.encode()
    if len(body) > limit:
        raise ProtocolError("body too large")
    return device_id(msg.get("device")), body


def openings_frames(
    device: str, challenge: str, body: bytes, *, part_size: int = OPENINGS_PART
) -> Iterator[dict[str, Any]]:
    """The frames that carry one binary opening response (core.pog.wire), in order."""
    view = memoryview(body)
    count = max(1, -(-len(body) // part_size))
    for i in range(count):
        yield {
            "t": "openings",
            "device": device,
            "challenge": challenge,
            "part": i,
            "last": i == count - 1,
            "body": bytes(view[i * part_size : (i + 1) * part_size]),
        }


@dataclass(frozen=True, slots=True)
class OpeningsPart:
    device: str
    challenge: str
    part: int
    last: bool
    body: bytes

    @classmethod
    def parse(cls, msg: Mapping[str, Any]) -> OpeningsPart:
        challenge = _field(msg, "challenge", str)
        if not _CHALLENGE_ID_RE.match(challenge):
            raise ProtocolError("openings: not a valid challenge id")
        part = _field(msg, "part", int)
        body = _field(msg, "body", bytes)
        if not 0 <= part < 1 << 16 or len(body) > OPENINGS_PART:
            raise ProtocolError(
                f"openings: parts are numbered from 0, {OPENINGS_PART} bytes at most"
            )
        return cls(device_id(msg.get("device")), challenge, part, _field(msg, "last", bool), body)


class OpeningsAssembler:
    """Puts each device's opening response back together from its parts.

    At most `limit` bytes per device (the largest opening the catalog can ask for) and
    one response per device at a time, so a session holds at most one opening per
    device; the check is made before a part is kept. Parts must come in order: 0, 1,
    ... up to the one marked last, all for one challenge.
    """

    __slots__ = ("_open", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        # device -> (challenge, parts so far, bytes so far)
        self._open: dict[str, tuple[str, list[bytes], int]] = {}

    @property
    def buffered(self) -> int:
        return sum(size for _, _, size in self._open.values())

    def add(self, part: OpeningsPart) -> bytes | None:
        """The whole response once its last part is in, else None; ProtocolError if the
        parts break the rules (the caller ends the session)."""
        challenge, parts, size = self._open.pop(part.device, (part.challenge, [], 0))
        if part.part != len(parts) or part.challenge != challenge:
            raise ProtocolError("openings: parts out of order")
        size += len(part.body)
        if size > self.limit:
            raise ProtocolError(f"openings: more than {self.limit} bytes")
        parts.append(part.body)
        if part.last:
            return b"".join(parts)
        self._open[part.device] = (challenge, parts, size)
        return None


def command(command_id: str, name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    return {"t": "command", "id": command_id, "name": name, "args": dict(args)}


def parse_command(msg: Mapping[str, Any]) -> tuple[str, str, dict[str, Any]]:
    cid = _field(msg, "id", str)
    name = _field(msg, "name", str)
    args = msg.get("args", {})
    if not 0 < len(cid) <= 64 or not _NAME_RE.match(name) or not isinstance(args, dict):
        raise ProtocolError("command: bad id, name or args")
    return cid, name, args


def command_result(
    command_id: str, *, ok: bool, result: Any = None, error: str | None = None
) -> dict[str, Any]:
    msg: dict[str, Any] = {"t": "command_result", "id": command_id, "ok": ok}
    if ok:
        msg["result"] = result
    else:
        msg["error"] = (error or "failed")[:500]
    return msg


def bye(reason: str) -> dict[str, Any]:
    return {"t": "bye", "reason": reason[:200]}


def error(code: str, message: str, ref: str | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"t": "error", "code": code, "message": message[:500]}
    if ref is not None:
        msg["ref"] = ref
    return msg
