"""clawmesh runner service."""
