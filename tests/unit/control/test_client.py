"""The agent's control client against scripted fake coordinators (no database)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gpunet.agent.control import Backoff, ControlClient
from gpunet.core import control, signing

SERVER_ID = "https://coordinator.example"
Script = Callable[[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]], Awaitable[None]]


async def read_message(reader: asyncio.StreamReader, decoder: control.FrameDecoder) -> Any:
    while True:
        data = await asyncio.wait_for(reader.read(65536), 5)
        if not data:
            return None
        out = decoder.feed(data)
        if out:
            return out[0]


async def with_fake(script: Script, check: Callable[[ControlClient, dict[str, Any]],
                                                    Awaitable[None]]) -> None:
    seen: dict[str, Any] = {"connections": 0, "auths": []}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen["connections"] += 1
        await script(reader, writer, seen)
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    signer = signing.DeviceSigner("dev_a", Ed25519PrivateKey.generate())
    client = ControlClient([("127.0.0.1", port)], [signer], server_id=SERVER_ID,
                           backoff=Backoff(0.01, 0.05))
    task = asyncio.create_task(client.run())
    try:
        await check(client, seen)
    finally:
        await client.stop()
        await asyncio.wait_for(task, 5)
        server.close()


async def until(predicate: Callable[[], bool]) -> None:
    for _ in range(500):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


def test_client_refuses_to_sign_for_a_server_of_another_name() -> None:
    async def rogue(reader: Any, writer: Any, seen: dict[str, Any]) -> None:
        writer.write(control.encode(control.Hello(b"n" * 32, "https://evil", 0.0, (1, 1))
                                    .wire()))
        msg = await read_message(reader, control.FrameDecoder())
        if msg is not None:
            seen["auths"].append(msg)

    async def check(client: ControlClient, seen: dict[str, Any]) -> None:
        await until(lambda: seen["connections"] >= 3)
        assert seen["auths"] == []  # never a signature for the rogue

    asyncio.run(check_timeout(with_fake(rogue, check)))


def test_client_survives_a_malformed_push_and_reconnects() -> None:
    async def sloppy(reader: Any, writer: Any, seen: dict[str, Any]) -> None:
        decoder = control.FrameDecoder()
        writer.write(control.encode(control.Hello(b"n" * 32, SERVER_ID, 0.0, (1, 1)).wire()))
        auth = control.Auth.parse(await read_message(reader, decoder))
        seen["auths"].append(auth)
        welcome = control.Welcome(1, "s", ("dev_a",), (), 0.05,
                                  control.Upgrade("none", "0.1.0"))
        writer.write(control.encode(welcome.wire()))
        writer.write(control.encode({"t": "challenge", "device": "dev_a", "body": b"{nonsense"}))
        await read_message(reader, decoder)

    async def check(client: ControlClient, seen: dict[str, Any]) -> None:
        await until(lambda: client.sessions >= 2)
        first = seen["auths"][0]
        message = control.auth_message(server_id=SERVER_ID, nonce=b"n" * 32, device_id="dev_a")
        public = client.signers["dev_a"]._key.public_key()
        assert signing.verify(public, first.devices[0][1], message)

    asyncio.run(check_timeout(with_fake(sloppy, check)))


async def check_timeout(coro: Awaitable[None]) -> None:
    await asyncio.wait_for(coro, 20)


def test_client_from_keystore_signs_for_every_enrolled_device(tmp_path: Any) -> None:
    import os

    from gpunet.agent.keystore import Keystore

    store = Keystore(tmp_path / "keys")
    for n, uuid in enumerate(["GPU-aaaa-0001", "GPU-aaaa-0002", "GPU-aaaa-0003"]):
        store.create(uuid)
        if n < 2:  # the third is not enrolled yet
            store.set_device_id(uuid, f"dev_{n}", coordinator_url=SERVER_ID)
    os.chmod(tmp_path / "keys", 0o700)
    client = ControlClient.from_keystore(store, [("127.0.0.1", 1)])
    assert sorted(client.signers) == ["dev_0", "dev_1"]
    assert client.server_id == SERVER_ID
