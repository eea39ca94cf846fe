"""clawmesh: a self-hosted multi-agent AI gateway built as microservices on NATS."""

__version__ = "0.1.0"
__all__ = ["__version__"]
