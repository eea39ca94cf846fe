"""Checks that need the whole config: shared paths, regexes, model providers, session links.

Bindings are routing's to judge (`routing.config_checks`), sandboxes sandbox's; both run as
checks handed to the loader."""

from __future__ import annotations

import re
from collections.abc import Sequence

from ._errors import Problem
from ._model import AgentView
from ._schema import ConfigFile
from ._settings import SessionSettings, Settings

__all__ = ["validate"]

KNOWN_PROVIDERS = frozenset({"anthropic", "openai", "echo"})


def validate(file: ConfigFile, settings: Settings, agents: Sequence[AgentView]) -> list[Problem]:
    problems: list[Problem] = []
    problems += _shared_paths(agents)
    problems += _mention_patterns(file, agents)
    problems += _models(file, agents)
    problems += _session(settings.session)
    problems += _sandbox_backends(file, agents)
    return problems


def _sandbox_backends(file: ConfigFile, agents: Sequence[AgentView]) -> list[Problem]:
    """OpenClaw has other sandbox backends (ssh, openshell, podman, …); clawmesh has docker only."""
    places = []
    defaults = file.agents.defaults if file.agents else None
    if defaults and defaults.sandbox and defaults.sandbox.backend:
        places.append(("$.agents.defaults.sandbox.backend", defaults.sandbox.backend))
    for agent in agents:
        if agent.entry.sandbox and agent.entry.sandbox.backend:
            places.append((f"{agent.path}.sandbox.backend", agent.entry.sandbox.backend))
    return [
        Problem(
            path,
            f"sandbox backend '{backend}' is not implemented by clawmesh; its sandboxes run in docker",
            "warning",
        )
        for path, backend in places
        if backend != "docker"
    ]


def _shared_paths(agents: Sequence[AgentView]) -> list[Problem]:
    problems: list[Problem] = []
    for attr, key, label in (("workspace", "workspace", "workspace"), ("agent_dir", "agentDir", "agentDir")):
        owners: dict[str, AgentView] = {}
        for agent in agents:
            where = str(getattr(agent, attr))
            if where in owners:
                problems.append(
                    Problem(
                        f"{agent.path}.{key}",
                        f"{label} {where} is shared with agent '{owners[where].id}'; each agent needs its own",
                    )
                )
            else:
                owners[where] = agent
    return problems


def _mention_patterns(file: ConfigFile, agents: Sequence[AgentView]) -> list[Problem]:
    sources: list[tuple[str, list[str]]] = []
    if file.messages and file.messages.group_chat and file.messages.group_chat.mention_patterns:
        sources.append(("$.messages.groupChat.mentionPatterns", file.messages.group_chat.mention_patterns))
    for agent in agents:
        gc = agent.entry.group_chat
        if gc and gc.mention_patterns:
            sources.append((f"{agent.path}.groupChat.mentionPatterns", gc.mention_patterns))
    problems = []
    for path, patterns in sources:
        for i, pattern in enumerate(patterns):
            try:
                re.compile(pattern, re.IGNORECASE)
            except re.error as exc:
                problems.append(Problem(f"{path}[{i}]", f"invalid regular expression {pattern!r}: {exc}"))
    return problems


def _models(file: ConfigFile, agents: Sequence[AgentView]) -> list[Problem]:
    custom = set(file.models.providers) if file.models else set()
    problems = []
    for agent in agents:
        for model in agent.models:
            provider = model.split("/", 1)[0] if "/" in model else "openai"
            if provider not in KNOWN_PROVIDERS and provider not in custom:
                problems.append(
                    Problem(
                        f"{agent.path}.model",
                        f"provider '{provider}' of model '{model}' is not supported "
                        "(anthropic, openai, echo, or one defined under models.providers); turns using it will fail",
                        "warning",
                    )
                )
    return problems


def _session(session: SessionSettings) -> list[Problem]:
    if session.identity_links and session.dm_scope == "main":
        return [
            Problem(
                "$.session.identityLinks",
                "identityLinks only apply when session.dmScope is not 'main'; they have no effect now",
                "warning",
            )
        ]
    return []
