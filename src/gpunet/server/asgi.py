"""ASGI entry point for uvicorn: settings from the environment."""

from gpunet.server.app import create_app
from gpunet.server.settings import Settings

app = create_app(Settings())
