"""clawmesh router service."""
