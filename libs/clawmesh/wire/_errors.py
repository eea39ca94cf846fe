"""The error vocabulary: every machine-readable code a message, a tool result or an HTTP error
body can carry. One list, so a typo is a type error (mypy) and an unknown code on the wire is
a validation error, and integrations can rely on the set.

Upper-case codes are clawmesh's own (turn events, route decisions, tool results, dead letters).
The lower-case ones are the HTTP API's request-level errors, kept as they always were because
clients match on them. Adding a code is a wire-contract change: readers must know it before
writers send it.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

__all__ = ["ERROR_CODES", "ErrorCode"]

ErrorCode = Literal[
    # routing (router; ingress answers 404 / 422)
    "AGENT_SELECTION_REQUIRED",
    "UNKNOWN_AGENT",
    "ROUTING_ERROR",
    # turns (runner)
    "RUNNER_NOT_AVAILABLE",
    "MODEL_ERROR",
    "TOOL_LOOP_LIMIT",
    "TURN_TIMEOUT",
    "TURN_FAILED",
    "INTERNAL_ERROR",
    "TIMEOUT",  # no reply in time (a tool, or a followed turn)
    "TURN_STOPPED",  # stopped on request (`clawmesh sessions stop`, a parent's stop cascading)
    # tool invocations (node-agent)
    "INVALID_REQUEST",
    "INVALID_ARGUMENTS",
    "UNKNOWN_TOOL",
    "CAPABILITY_MISSING",
    "SANDBOX_UNAVAILABLE",
    "SANDBOX_ERROR",
    "IO_ERROR",
    # exec policy and approvals (node-agent)
    "EXEC_DENIED",  # the exec policy refuses the command (deny, or an allowlist miss)
    "APPROVAL_DENIED",  # an operator denied the approval request
    "APPROVAL_TIMEOUT",  # nobody decided in time (askFallback did not allow it)
    # file tools (confined to the agent's workspace)
    "INVALID_PATH",
    "OUTSIDE_WORKSPACE",
    "READ_ONLY",
    "IS_DIRECTORY",
    "NOT_A_DIRECTORY",
    "NOT_FOUND",
    "PERMISSION_DENIED",
    "BINARY",
    "NO_MATCH",
    "AMBIGUOUS",
    "INVALID_PATTERN",
    "NOT_REGULAR",
    "PATH_CHANGED",
    "ALREADY_EXISTS",  # apply_patch: an Add File or a Move to onto an existing file
    # web_fetch (runner)
    "WEB_FETCH_FAILED",  # bad URL, network error, timeout, an HTTP error status, too many redirects
    "WEB_FETCH_BLOCKED",  # the SSRF policy refuses the target (private/internal address, blocklist)
    # messages a service could not process (dead letters)
    "INVALID_MESSAGE",
    "DELIVERY_LIMIT",  # delivered runtime.maxDeliveries times without being processed
    "UNDELIVERABLE",  # a reply the channel can never deliver (chat gone, bot blocked, retries spent)
    # process
    "NATS_CLOSED",  # a NATS connection closed for good: the process exits to be restarted
    # HTTP API request errors (`{"error": {"code": …}}`)
    "invalid_request",
    "invalid_json",
    "unauthorized",
    "rate_limited",
    "payload_too_large",
    "request_timeout",
    "unavailable",
    "not_found",
    "conflict",  # e.g. an approval request that is already decided or expired
    "method_not_allowed",
]

ERROR_CODES: Final[frozenset[str]] = frozenset(get_args(ErrorCode))
