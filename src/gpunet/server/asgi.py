"""uvicorn's factory-mode entry point, for deployments that run uvicorn themselves:

    uvicorn --factory gpunet.server.asgi:coordinator

Settings come from the environment (GPUNET_* and GPUNET_CONTROL_*). `gpunet server run`
passes its settings to `create_app` directly and uses this only for several workers.
"""

from fastapi import FastAPI

from gpunet.server.app import create_app
from gpunet.server.control.settings import ControlSettings
from gpunet.server.settings import Settings


def coordinator() -> FastAPI:
    return create_app(Settings(), control=ControlSettings())
