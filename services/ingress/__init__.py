"""clawmesh ingress service."""
