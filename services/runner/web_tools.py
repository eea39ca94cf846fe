"""`web_fetch`, run by the runner: it reads the network, not a node's workspace, so it needs no
node (OpenClaw runs it in the gateway too, sandboxed session or not). Its SSRF guard and limits
are in `clawmesh.tools.web_fetch`."""

from __future__ import annotations

import json
from typing import Any

from clawmesh.config import Config
from clawmesh.tools.specs import ToolArgumentError, WebFetchArgs, validate_tool_arguments
from clawmesh.tools.web_fetch import WebFetchBlocked, WebFetchError, fetch, fetch_settings

__all__ = ["run_web_fetch"]


async def run_web_fetch(config: Config, agent_id: str, arguments: dict[str, Any]) -> tuple[str, bool]:
    """(content, is_error): the JSON result, or an error the model can read."""
    try:
        args = validate_tool_arguments("web_fetch", arguments)
    except ToolArgumentError as exc:
        return exc.message, True
    if not isinstance(args, WebFetchArgs):
        return f"not a web_fetch call: {args!r}", True
    try:
        result = await fetch(args, fetch_settings(config, agent_id))
    except (WebFetchBlocked, WebFetchError) as exc:
        return exc.message, True
    return json.dumps(result, ensure_ascii=False), False
