"""Gateway settings shared by ingress, `clawmesh up` and the CLI: port, bind host, auth token."""

from __future__ import annotations

import ipaddress
import os
import secrets
import shlex
from pathlib import Path
from typing import Final

from .config import Config, secret_value

__all__ = [
    "DEFAULT_HTTP_PORT",
    "DEFAULT_NATS_PORT",
    "bind_host",
    "gateway_token",
    "http_port",
    "is_loopback",
    "is_placeholder_token",
    "token_file",
    "token_source",
]

DEFAULT_HTTP_PORT: Final = 18789  # OpenClaw's gateway port
DEFAULT_NATS_PORT: Final = 18790  # the embedded nats-server of `clawmesh up`


def http_port(config: Config, override: int | None = None) -> int:
    if override is not None:
        return override
    gw = config.document.gateway
    return gw.port if gw and gw.port is not None else DEFAULT_HTTP_PORT


def bind_host(config: Config) -> str:
    """`gateway.bind`: loopback (default) → 127.0.0.1, lan → 0.0.0.0, custom → customBindHost."""
    gw = config.document.gateway
    bind = (gw.bind if gw else None) or "loopback"
    if bind == "lan":
        return "0.0.0.0"
    if bind == "custom":
        if not gw or not gw.custom_bind_host:
            raise ValueError("gateway.bind is 'custom' but gateway.customBindHost is not set")
        return gw.custom_bind_host
    return "127.0.0.1"  # loopback, and tailnet/auto without a tailnet


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


# Tokens that examples and old defaults printed: whoever read the docs knows them.
_PLACEHOLDER_TOKENS: Final = frozenset({"change-me", "changeme", "change_me", "secret", "token", "password"})


def is_placeholder_token(token: str) -> bool:
    """A token copied from an example (`change-me`, ...): refused outside loopback."""
    return token.strip().lower() in _PLACEHOLDER_TOKENS


def token_file(config: Config) -> Path:
    return config.state_dir / "gateway-token"


def token_source(config: Config) -> tuple[str, str] | None:
    """Where the HTTP API token lives, for people: (description, shell expression giving it).
    The token itself is never printed; None when auth mode is none."""
    gw = config.document.gateway
    auth = gw.auth if gw else None
    where = str(config.source) if config.source else "the config"
    env = config.env.get("CLAWMESH_GATEWAY_TOKEN", "").strip()
    if auth and auth.mode == "none":
        return None
    if auth and auth.mode == "password" and auth.password:
        return f"gateway.auth.password in {where}", "<gateway.auth.password>"
    # The environment variable also overrides gateway.auth.token when the config is loaded.
    if env and (not auth or not auth.token or auth.token == env):
        return "$CLAWMESH_GATEWAY_TOKEN", "$CLAWMESH_GATEWAY_TOKEN"
    if auth and auth.token:
        return f"gateway.auth.token in {where}", "<gateway.auth.token>"
    path = token_file(config)
    return str(path), f"$(cat {shlex.quote(str(path))})"


def gateway_token(config: Config, *, create: bool = False) -> str | None:
    """The HTTP API token: `gateway.auth.token`, else `CLAWMESH_GATEWAY_TOKEN`, else the one
    stored in the state dir (created with `create`, mode 0600). None when auth mode is none."""
    gw = config.document.gateway
    auth = gw.auth if gw else None
    if auth and auth.mode == "none":
        return None
    if auth and auth.mode == "password" and auth.password:
        return secret_value(auth.password, config.env, "$.gateway.auth.password")
    if auth and auth.token:
        return secret_value(auth.token, config.env, "$.gateway.auth.token")
    env = config.env.get("CLAWMESH_GATEWAY_TOKEN", "").strip()
    if env:
        return env
    path = token_file(config)
    try:
        stored = path.read_text().strip()
        if stored:
            return stored
    except OSError:
        pass
    if not create:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(24)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    return token
