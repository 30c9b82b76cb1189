"""The coordinator app with the control channel started in its lifespan, on the same
event loop as the HTTP API (what `gpunet server run` serves).

With several uvicorn workers each binds the control port with SO_REUSEPORT and the
kernel spreads hosts over them; every worker is a replica like any other.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from gpunet.server.app import create_app
from gpunet.server.control.server import start_control_server
from gpunet.server.control.settings import ControlSettings
from gpunet.server.settings import Settings


def create_app_with_control(
    settings: Settings, control: ControlSettings | None = None, **kwargs: Any
) -> FastAPI:
    app = create_app(settings, **kwargs)
    control = control or ControlSettings()
    if not control.enabled:
        return app
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(application: FastAPI) -> AsyncIterator[Any]:
        async with inner(application) as value:
            server = await start_control_server(
                application.state.gpunet,
                host=control.host,
                port=control.port,
                settings=control,
                reuse_port=True,
            )
            application.state.control = server
            try:
                yield value
            finally:
                await server.stop()

    app.router.lifespan_context = lifespan
    return app


def _from_environment() -> FastAPI:
    return create_app_with_control(Settings())


app = _from_environment()
