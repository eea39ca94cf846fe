"""OpenClaw's inbound webhooks (`hooks.*`): the policy a config resolves to, and how a hook
payload becomes wake and agent actions. The HTTP side is the ingress's (`hooks_api.py`).

    policy = resolve_hooks(config)                 # None: hooks are off
    action = agent_payload(payload, policy.channels)
    agent = policy.target_agent(action.agent_id, "request")
    key = policy.dispatch_key(policy.session_key(action.session_key, "request"), agent)
"""

from ._mapping import (
    FAN_OUT_LIMIT,
    AgentAction,
    Delivery,
    HookPayloadError,
    HookRule,
    MappedActions,
    MappingContext,
    TransformUnsupported,
    WakeAction,
    agent_payload,
    apply_rules,
    has_template,
    hook_idempotency_key,
    render,
    rules_from,
    wake_payload,
)
from ._policy import (
    DEFAULT_HOOKS_MAX_BODY_BYTES,
    DEFAULT_HOOKS_PATH,
    MAX_HOOK_SESSION_KEY_LENGTH,
    HookPolicyError,
    HooksConfigError,
    HooksPolicy,
    SessionKeySource,
    config_checks,
    resolve_hooks,
)
from ._wrap import EXTERNAL_CONTENT_WARNING, wrap_external_content

__all__ = [
    "DEFAULT_HOOKS_MAX_BODY_BYTES",
    "DEFAULT_HOOKS_PATH",
    "EXTERNAL_CONTENT_WARNING",
    "FAN_OUT_LIMIT",
    "MAX_HOOK_SESSION_KEY_LENGTH",
    "AgentAction",
    "Delivery",
    "HookPayloadError",
    "HookPolicyError",
    "HookRule",
    "HooksConfigError",
    "HooksPolicy",
    "MappedActions",
    "MappingContext",
    "SessionKeySource",
    "TransformUnsupported",
    "WakeAction",
    "agent_payload",
    "apply_rules",
    "config_checks",
    "has_template",
    "hook_idempotency_key",
    "render",
    "resolve_hooks",
    "rules_from",
    "wake_payload",
    "wrap_external_content",
]
