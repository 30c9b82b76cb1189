"""gpunet: an attack-hardened decentralized GPU compute network."""

__version__ = "0.1.0"
