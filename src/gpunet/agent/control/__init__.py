"""The agent's end of the control channel (protocol: gpunet.core.control)."""

from gpunet.agent.control.backoff import Backoff
from gpunet.agent.control.client import ControlClient, Endpoint, Refused
from gpunet.agent.control.duties import CommandDuty, Duty, HeartbeatDuty, ProofDuty

__all__ = [
    "Backoff",
    "CommandDuty",
    "ControlClient",
    "Duty",
    "Endpoint",
    "HeartbeatDuty",
    "ProofDuty",
    "Refused",
]
