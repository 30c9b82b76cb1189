"""The control channel's pure protocol: framing, message validation, auth bytes,
version negotiation and the upgrade policy."""

from __future__ import annotations

import datetime as dt
import random
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gpunet.core import control
from gpunet.core.control import (
    Auth,
    FrameDecoder,
    Hello,
    ProtocolError,
    Upgrade,
    UpgradePolicy,
    Welcome,
    decide_upgrade,
    negotiate,
    parse_version,
)

NOW = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)


def test_frames_round_trip_whole_split_and_coalesced() -> None:
    messages = [control.heartbeat(i) for i in range(50)] + [control.bye("done")]
    stream = b"".join(control.encode(m) for m in messages)
    assert list(FrameDecoder().feed(stream)) == messages
    for chunk in (1, 3, 7, 64):
        dec = FrameDecoder()
        out = []
        for i in range(0, len(stream), chunk):
            out.extend(dec.feed(stream[i : i + chunk]))
        assert out == messages and dec.pending == 0


def test_oversize_frame_is_refused_from_its_header_alone() -> None:
    dec = FrameDecoder(max_frame=1024)
    with pytest.raises(ProtocolError, match="exceeds the limit"):
        list(dec.feed(struct.pack(">I", 1025)))
    with pytest.raises(ProtocolError, match="exceeds the frame limit"):
        control.encode({"t": "x", "pad": b"a" * 2048}, max_frame=1024)


def test_truncated_frame_waits_for_the_rest() -> None:
    frame = control.encode(control.heartbeat(1))
    dec = FrameDecoder()
    assert list(dec.feed(frame[:-1])) == []
    assert dec.pending == len(frame) - 1
    assert list(dec.feed(frame[-1:])) == [control.heartbeat(1)]


@pytest.mark.parametrize(
    "payload",
    [b"\xc1", b"\x93\x01\x02\x03", b"\xa3abc", b"\x81\x01\x02", b"\x81\xa1t\x01", b""],
)
def test_garbage_and_wrong_types_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(ProtocolError):
        list(FrameDecoder().feed(struct.pack(">I", len(payload)) + payload))


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_anything_but_protocol_errors(data: bytes) -> None:
    try:
        for msg in FrameDecoder(max_frame=4096).feed(data):
            assert isinstance(msg, dict) and isinstance(msg["t"], str)
    except ProtocolError:
        pass


def test_auth_message_binds_server_nonce_and_device() -> None:
    base = {"server_id": "https://c.example", "nonce": b"\x01" * 32, "device_id": "dev_a"}
    msg = control.auth_message(**base)  # type: ignore[arg-type]
    assert msg.startswith(control.AUTH_CONTEXT + b"\n")
    for change in ({"server_id": "https://evil"}, {"nonce": b"\x02" * 32},
                   {"device_id": "dev_b"}):
        assert control.auth_message(**(base | change)) != msg  # type: ignore[arg-type]


def test_hello_auth_welcome_round_trip() -> None:
    hello = Hello(b"n" * 32, "https://c", 1.5, (1, 1))
    assert Hello.parse(hello.wire()) == hello
    auth = Auth((1, 2), "0.1.0", (("dev_a", b"s" * 64), ("dev_b", b"t" * 64)))
    assert Auth.parse(auth.wire()) == auth
    welcome = Welcome(1, "abc", ("dev_a",), (("dev_b", "no"),), 60.0,
                      Upgrade("required", "0.3.0", NOW))
    assert Welcome.parse(welcome.wire()) == welcome
    # The same through real framing (msgpack turns tuples into lists).
    [wired] = FrameDecoder().feed(control.encode(auth.wire()))
    assert Auth.parse(wired) == auth


@pytest.mark.parametrize(
    "bad",
    [
        {"t": "auth", "proto": [1, 1], "agent": "0.1", "devices": []},
        {"t": "auth", "proto": [1, 1], "agent": "0.1", "devices": [["d", b"s" * 64]] * 2},
        {"t": "auth", "proto": [1, 1], "agent": "0.1", "devices": [["bad id!", b"s" * 64]]},
        {"t": "auth", "proto": [1, 1], "agent": "0.1", "devices": [["d", "s" * 64]]},
        {"t": "auth", "proto": [2, 1], "agent": "0.1", "devices": [["d", b"s" * 64]]},
        {"t": "auth", "proto": [True, 1], "agent": "0.1", "devices": [["d", b"s" * 64]]},
        {"t": "auth", "proto": [1, 1], "agent": "x" * 40, "devices": [["d", b"s" * 64]]},
        {"t": "auth", "proto": [1, 1], "agent": "0.1",
         "devices": [[f"d{i}", b"s" * 64] for i in range(65)]},
        {"t": "hello", "proto": [1, 1]},
    ],
)
def test_malformed_auth_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ProtocolError):
        Auth.parse(bad)


def test_heartbeat_devices_and_commands() -> None:
    assert control.heartbeat_devices(control.heartbeat(1)) is None
    assert control.heartbeat_devices(control.heartbeat(1, ["dev_a"])) == ["dev_a"]
    with pytest.raises(ProtocolError):
        control.heartbeat_devices({"t": "hb", "d": "dev_a"})
    cmd = control.command("c1", "cluster.start", {"x": 1})
    assert control.parse_command(cmd) == ("c1", "cluster.start", {"x": 1})
    with pytest.raises(ProtocolError):
        control.parse_command({"t": "command", "id": "c1", "name": "Bad Name", "args": {}})
    assert control.command_result("c1", ok=False, error="e" * 999)["error"] == "e" * 500


def test_negotiation_picks_the_highest_common_version() -> None:
    assert negotiate((1, 3), (2, 5)) == 3
    assert negotiate((1, 1), (1, 1)) == 1
    assert negotiate((3, 4), (1, 2)) is None


def test_versions_parse_leniently() -> None:
    assert parse_version("1.2.3") == (1, 2, 3)
    assert parse_version("1.3.0rc1") == (1, 3, 0)
    assert parse_version("garbage") == (0,)
    assert parse_version("0.10.0") > parse_version("0.9.9")


def test_upgrade_policy_never_cuts_an_old_agent_off_at_once() -> None:
    later = NOW + dt.timedelta(days=14)
    assert decide_upgrade("0.3.0", UpgradePolicy("0.3.0"), NOW).state == "none"
    assert decide_upgrade("0.2.0", UpgradePolicy("0.3.0"), NOW).state == "available"
    # A minimum without a date is only a notice.
    assert decide_upgrade("0.1.0", UpgradePolicy("0.3.0", "0.2.0"), NOW).state == "available"
    policy = UpgradePolicy("0.3.0", "0.2.0", later)
    required = decide_upgrade("0.1.0", policy, NOW)
    assert required == Upgrade("required", "0.3.0", later)
    assert decide_upgrade("0.2.5", policy, NOW).state == "available"
    assert decide_upgrade("0.1.0", policy, later - dt.timedelta(seconds=1)).state == "required"
    assert decide_upgrade("0.1.0", policy, later).state == "refused"
    assert Upgrade.from_wire(required.wire()) == required
    with pytest.raises(ProtocolError):
        Upgrade.from_wire({"state": "maybe"})


def test_random_mutations_of_valid_frames_are_contained() -> None:
    rng = random.Random(4)
    frame = bytearray(control.encode(Auth((1, 1), "0.1.0", (("dev_a", b"s" * 64),)).wire()))
    for _ in range(2000):
        mutated = bytearray(frame)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(4, len(mutated))] = rng.randrange(256)
        try:
            for msg in FrameDecoder().feed(bytes(mutated)):
                Auth.parse(msg)
        except ProtocolError:
            pass
