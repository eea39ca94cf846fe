"""`python -m clawmesh_node_agent` / `clawmesh-node-agent`: run the node-agent service alone.

clawmesh-node-agent --config C --nats-url U [--node-id ID] [--label region=sg]...
"""

from __future__ import annotations

import argparse
import os
import sys

from clawmesh.bus import configure_logging, run_loop, run_one
from clawmesh.checks import default_checks
from clawmesh.config import ConfigError, ConfigHolder

from .app import NodeAgent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="clawmesh-node-agent", description="Run the clawmesh node-agent service."
    )
    parser.add_argument(
        "--config", "-c", help="config file (default: $CLAWMESH_CONFIG_PATH or ~/.clawmesh/clawmesh.json)"
    )
    parser.add_argument(
        "--nats-url", default=os.environ.get("CLAWMESH_NATS_URL"), help="NATS URL(s), comma separated"
    )
    parser.add_argument(
        "--node-id",
        default=os.environ.get("CLAWMESH_NODE_ID"),
        help="this node's id (default: nodes.local.id, else the hostname)",
    )
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a label (region=sg, location=…), repeatable",
    )
    parser.add_argument("--log-level", default=None)
    args = parser.parse_args(argv)
    labels = {}
    for item in args.label:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--label expects key=value, got {item!r}")
        labels[key] = value
    configure_logging(args.log_level)
    try:
        holder = ConfigHolder.load(args.config, checks=default_checks())
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    options = {"node_id": args.node_id, "labels": labels}
    try:
        run_loop(run_one(NodeAgent, holder, args.nats_url, options))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
