"""Where a proxy agent really runs: its `runnerType` block (`coze`, `openclawx`, `opencode`,
`claudeCode` as the seed writes them; `synadia`, `a2a`) resolved and checked once, at load.

Secrets stay as written (a string, a `${VAR}` or a SecretRef): the runner reads them with
`secret_value` when it calls the backend, so `config show` never sees their values.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal, TypeAlias
from urllib.parse import urlsplit

from ._errors import Problem
from ._paths import resolve_user_path
from ._schema import AgentEntry, RunnerType, Secret

__all__ = [
    "COZE_BASE_URLS",
    "A2ASettings",
    "BackendSettings",
    "ClaudeCodeSettings",
    "CozeSettings",
    "OpenClawXSettings",
    "OpenCodeSettings",
    "SynadiaSettings",
    "backend_where",
    "resolve_backend",
]

COZE_BASE_URLS: Final = {"cn": "https://api.coze.cn", "com": "https://api.coze.com"}
OPENCODE_DEFAULT_PORT: Final = 4096


@dataclass(frozen=True, slots=True)
class CozeSettings:
    region: Literal["cn", "com"]
    base_url: str
    bot_id: str
    api_key: Secret
    api_key_path: str  # where the key is configured, for the error when it cannot be read


@dataclass(frozen=True, slots=True)
class OpenClawXSettings:
    base_url: str
    api_key: Secret | None
    api_key_path: str
    agent_id: str | None
    gateway: str | None = None  # a federated gateway's region: the turn goes over NATS


@dataclass(frozen=True, slots=True)
class OpenCodeSettings:
    mode: Literal["local", "remote"]
    base_url: str
    port: int
    password: Secret | None
    password_path: str
    working_directory: Path
    model: str | None
    command: str


@dataclass(frozen=True, slots=True)
class ClaudeCodeSettings:
    working_directory: Path
    command: str
    model: str | None
    permission_mode: str | None


@dataclass(frozen=True, slots=True)
class SynadiaSettings:
    """The remote agent's identity; its prompt subject is found by discovery, never built."""

    agent: str
    owner: str
    session: str


@dataclass(frozen=True, slots=True)
class A2ASettings:
    """A remote A2A agent: `url` is its card, its base URL (the card below it) or its JSON-RPC
    endpoint; which one is found out when the runner first calls it."""

    url: str
    token: Secret | None
    token_path: str


BackendSettings: TypeAlias = (
    CozeSettings | OpenClawXSettings | OpenCodeSettings | ClaudeCodeSettings | SynadiaSettings | A2ASettings
)


def backend_where(settings: BackendSettings | None) -> str:
    """One line saying where the agent's turns really run (`agents list`, `sandbox explain`)."""
    if isinstance(settings, CozeSettings):
        return f"Coze bot {settings.bot_id} at {settings.base_url} (chat v3)"
    if isinstance(settings, OpenClawXSettings):
        agent = f" agent {settings.agent_id}" if settings.agent_id else ""
        return f"remote gateway {settings.base_url}{agent} (OpenAI-compatible API)"
    if isinstance(settings, OpenCodeSettings):
        started = "started by the runner" if settings.mode == "local" else "remote"
        return f"OpenCode server {settings.base_url} ({started}), directory {settings.working_directory}"
    if isinstance(settings, SynadiaSettings):
        return f"Synadia Agent Protocol agent {settings.agent}.{settings.owner}.{settings.session} on the bus"
    if isinstance(settings, A2ASettings):
        return f"remote A2A agent {settings.url} (JSON-RPC)"
    if isinstance(settings, ClaudeCodeSettings):
        return f"Claude Code CLI ({settings.command}) in {settings.working_directory}, on the runner's host"
    return "this gateway's runner (model providers; tools on nodes)"


def _http_url(raw: str | None, path: str, problems: list[Problem]) -> str | None:
    if raw is None or not raw.strip():
        problems.append(Problem(path, "missing required key (an http(s) URL)"))
        return None
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        problems.append(Problem(path, f"{raw!r} is not an http(s) URL"))
        return None
    return raw.strip().rstrip("/")


def _required(value: str | None, path: str, what: str, problems: list[Problem]) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        problems.append(Problem(path, f"missing required key ({what})"))
        return None
    return value


def resolve_backend(
    entry: AgentEntry,
    runner_type: RunnerType,
    workspace: Path,
    env: Mapping[str, str],
    path: str,
    problems: list[Problem],
) -> BackendSettings | None:
    """The agent's backend settings for a proxy `runner_type` (None for `local`), its problems
    appended to `problems` with their paths."""
    if runner_type == "coze":
        return _coze(entry, path, problems)
    if runner_type == "openclawx":
        return _openclawx(entry, path, problems)
    if runner_type == "opencode":
        return _opencode(entry, workspace, env, path, problems)
    if runner_type == "synadia":
        return _synadia(entry, path, problems)
    if runner_type == "a2a":
        return _a2a(entry, path, problems)
    if runner_type == "claude_code":
        cc = entry.claude_code
        raw_dir = cc.working_directory if cc else None
        return ClaudeCodeSettings(
            working_directory=resolve_user_path(raw_dir, env) if raw_dir and raw_dir.strip() else workspace,
            command=(cc.command if cc and cc.command else "claude"),
            model=cc.model if cc else None,
            permission_mode=cc.permission_mode if cc else None,
        )
    return None


_PROTOCOL_TOKEN: Final = re.compile(r"^[a-z0-9_-]{1,63}$")


def _synadia(entry: AgentEntry, path: str, problems: list[Problem]) -> SynadiaSettings | None:
    block = entry.synadia
    here = f"{path}.synadia"
    if block is None:
        problems.append(Problem(here, "runnerType 'synadia' needs a synadia block: {agent, owner, session}"))
        return None
    values: list[str] = []
    for key, value in (("agent", block.agent), ("owner", block.owner), ("session", block.session)):
        if value is None or not _PROTOCOL_TOKEN.match(value):
            problems.append(
                Problem(f"{here}.{key}", f"{value!r} is not a protocol token (1-63 of a-z, 0-9, '_', '-')")
            )
            return None
        values.append(value)
    return SynadiaSettings(agent=values[0], owner=values[1], session=values[2])


def _a2a(entry: AgentEntry, path: str, problems: list[Problem]) -> A2ASettings | None:
    block = entry.a2a
    here = f"{path}.a2a"
    if block is None:
        problems.append(Problem(here, "runnerType 'a2a' needs an a2a block: {url, token?}"))
        return None
    url = _http_url(block.url, f"{here}.url", problems)
    if url is None:
        return None
    if urlsplit(url).fragment:
        problems.append(Problem(f"{here}.url", f"{block.url!r} has a #fragment, which is never sent"))
        return None
    token = block.token
    if isinstance(token, str) and not token.strip():
        problems.append(
            Problem(f"{here}.token", "empty: give the remote agent's bearer token, or leave token out")
        )
        return None
    return A2ASettings(url=url, token=token, token_path=f"{here}.token")


def _coze(entry: AgentEntry, path: str, problems: list[Problem]) -> CozeSettings | None:
    coze = entry.coze
    here = f"{path}.coze"
    if coze is None:
        problems.append(
            Problem(here, "runnerType 'coze' needs a coze block: {region, cn|com: {botId, apiKey}}")
        )
        return None
    region = coze.region
    if region is None:
        present = [name for name in ("cn", "com") if getattr(coze, name) is not None]
        if len(present) != 1:
            problems.append(Problem(f"{here}.region", "missing required key ('cn' or 'com')"))
            return None
        region = "cn" if present == ["cn"] else "com"
    site = coze.cn if region == "cn" else coze.com
    if site is None:
        problems.append(
            Problem(f"{here}.{region}", f"region is '{region}' but there is no coze.{region} block")
        )
        return None
    bot_id = _required(site.bot_id, f"{here}.{region}.botId", "the Coze bot id", problems)
    api_key = site.api_key
    if api_key is None or (isinstance(api_key, str) and not api_key.strip()):
        problems.append(Problem(f"{here}.{region}.apiKey", "missing required key (a Coze access token)"))
        return None
    base_url = COZE_BASE_URLS[region]
    if coze.base_url is not None:
        base_url = _http_url(coze.base_url, f"{here}.baseUrl", problems) or base_url
    if bot_id is None:
        return None
    return CozeSettings(
        region=region,
        base_url=base_url,
        bot_id=bot_id,
        api_key=api_key,
        api_key_path=f"{here}.{region}.apiKey",
    )


_REGION = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")


def _openclawx(entry: AgentEntry, path: str, problems: list[Problem]) -> OpenClawXSettings | None:
    block = entry.openclawx
    here = f"{path}.openclawx"
    if block is None:
        problems.append(
            Problem(here, "runnerType 'openclawx' needs an openclawx block: {baseUrl, apiKey?} or {gateway}")
        )
        return None
    if block.gateway is not None:
        if block.base_url is not None:
            problems.append(
                Problem(
                    f"{here}.gateway", "give baseUrl (over HTTP) or gateway (over the federation), not both"
                )
            )
            return None
        if not _REGION.match(block.gateway):
            problems.append(
                Problem(f"{here}.gateway", f"{block.gateway!r} is not a region name (1-32 of a-z, 0-9, '-')")
            )
            return None
        if not block.agent_id:
            problems.append(Problem(f"{here}.agentId", "with gateway, name the remote agent (agentId)"))
            return None
        return OpenClawXSettings(
            base_url="",
            api_key=None,
            api_key_path=f"{here}.apiKey",
            agent_id=block.agent_id,
            gateway=block.gateway,
        )
    base_url = _http_url(block.base_url, f"{here}.baseUrl", problems)
    if base_url is None:
        return None
    # the gateway's root or its /v1: both are written in the wild
    base_url = base_url.removesuffix("/v1")
    return OpenClawXSettings(
        base_url=base_url, api_key=block.api_key, api_key_path=f"{here}.apiKey", agent_id=block.agent_id
    )


def _opencode(
    entry: AgentEntry, workspace: Path, env: Mapping[str, str], path: str, problems: list[Problem]
) -> OpenCodeSettings | None:
    block = entry.opencode
    here = f"{path}.opencode"
    mode = (block.mode if block else None) or "local"
    port = (block.port if block else None) or OPENCODE_DEFAULT_PORT
    if not 0 < port < 65536:
        problems.append(Problem(f"{here}.port", f"{port} is not a TCP port (1-65535)"))
        return None
    address = block.address if block else None
    if mode == "remote" and (address is None or not address.strip()):
        problems.append(Problem(f"{here}.address", "mode 'remote' needs the server's address"))
        return None
    base_url = _opencode_url(address, port, f"{here}.address", problems)
    if base_url is None:
        return None
    model = block.model if block else None
    if model is not None and "/" not in model.strip("/"):
        problems.append(Problem(f"{here}.model", f"{model!r} is not 'provider/model'"))
        return None
    raw_dir = block.working_directory if block else None
    return OpenCodeSettings(
        mode=mode,
        base_url=base_url,
        port=port,
        password=block.password if block else None,
        password_path=f"{here}.password",
        working_directory=resolve_user_path(raw_dir, env) if raw_dir and raw_dir.strip() else workspace,
        model=model,
        command=(block.command if block and block.command else "opencode"),
    )


def _opencode_url(address: str | None, port: int, path: str, problems: list[Problem]) -> str | None:
    """`address` may be a host, `host:port` or a URL; the port applies when it names none."""
    raw = (address or "127.0.0.1").strip()
    if "://" not in raw:
        raw = f"http://{raw}"
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(Problem(path, f"{address!r} is not a host, host:port or http(s) URL"))
        return None
    try:
        explicit = parts.port
    except ValueError:
        problems.append(Problem(path, f"{address!r} has an invalid port"))
        return None
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    return f"{parts.scheme}://{host}:{explicit or port}{parts.path.rstrip('/')}"
