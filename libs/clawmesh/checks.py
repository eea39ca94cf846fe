"""The domain checks every loaded config goes through, for all the places that load one.

`clawmesh.config` is the ground floor and knows neither routing nor sandbox; each of them judges
its part of a `Config` (`routing.config_checks`: bindings, `sandbox.config_checks`: binds,
networks, …; `channels.config_checks`: access policies and mention patterns;
`channels.slack.config_checks`: reply threading keys; `hooks.config_checks`: hooks OpenClaw's
gateway would not start with). The loaders require the checks as an argument, and the CLI, the service entry
points and the composition root pass `default_checks()`; a reload runs the checks the current
config passed (`Config.checks`), so it cannot lose them.
"""

from __future__ import annotations

from .channels import config_checks as channel_checks
from .channels.slack import config_checks as slack_checks
from .config import ConfigCheck
from .hooks import config_checks as hooks_checks
from .routing import config_checks as routing_checks
from .sandbox import config_checks as sandbox_checks

__all__ = ["default_checks"]


def default_checks() -> tuple[ConfigCheck, ...]:
    """Every domain's config checks, in the order their problems are reported."""
    return (routing_checks, sandbox_checks, channel_checks, slack_checks, hooks_checks)
