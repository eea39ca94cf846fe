"""clawmesh runner service: turns, model calls, the tool loop, transcripts, replies."""

from .app import Runner

__all__ = ["Runner"]
