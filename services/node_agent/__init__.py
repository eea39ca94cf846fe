"""clawmesh node_agent service."""
