"""Where the agent keeps its state: one directory, private to the user running it."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


def agent_home(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("GPUNET_HOME"):
        return Path(env["GPUNET_HOME"])
    base = env.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "gpunet"


@dataclass(frozen=True, slots=True)
class AgentConfig:
    coordinator_url: str
    cpu_dev: int = 0  # cpu-dev devices to run when the host has no GPU (local networks)
    # HOST:PORT of the control channel, as the coordinator said at enrollment.
    control: str | None = None

    @classmethod
    def load(cls, home: Path) -> AgentConfig | None:
        path = home / "agent.json"
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        control = data.get("control")
        return cls(
            coordinator_url=str(data["coordinator_url"]),
            cpu_dev=int(data.get("cpu_dev", 0)),
            control=str(control) if control else None,
        )

    def save(self, home: Path) -> None:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(home, 0o700)
        path = home / "agent.json"
        tmp = path.with_suffix(".tmp")
        data = {"coordinator_url": self.coordinator_url, "cpu_dev": self.cpu_dev}
        if self.control:
            data["control"] = self.control
        tmp.write_text(json.dumps(data, indent=2))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
