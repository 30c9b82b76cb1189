"""The coordinator's end of the control channel (protocol: gpunet.core.control)."""

from gpunet.server.control.server import ControlServer, ControlStats, start_control_server
from gpunet.server.control.session import CommandFailed, ServerSession
from gpunet.server.control.settings import ControlSettings

__all__ = [
    "CommandFailed",
    "ControlServer",
    "ControlSettings",
    "ControlStats",
    "ServerSession",
    "start_control_server",
]
