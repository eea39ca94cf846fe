"""Configuration: OpenClaw-compatible `openclaw.json` / `clawmesh.json` (JSON5), validated with msgspec.

The ground floor: schema, loading and resolved settings; it imports no other domain. Routing and
sandbox judge their parts of a config through checks the caller hands in:

from clawmesh.checks import default_checks
from clawmesh.config import load_config, parse_config
config = load_config(checks=default_checks())   # --config > CLAWMESH_CONFIG_PATH > ~/.clawmesh/clawmesh.json
config = parse_config({"agents": {...}, "bindings": [...]}, checks=default_checks())
config.settings.runtime.turn_timeout             # every default applied once, at load
"""

from typing import TYPE_CHECKING, Any

from ._errors import ConfigError, Problem, Severity
from ._load import load_config, parse_config, parse_config_text, read_config_file
from ._model import DEFAULT_MAX_CONCURRENT, DEFAULT_MODEL, AgentView, Config, ConfigCheck
from ._paths import (
    CONFIG_FILENAME,
    config_env,
    config_path,
    default_workspace,
    home_dir,
    resolve_user_path,
    state_dir,
)
from ._runners import (
    COZE_BASE_URLS,
    A2ASettings,
    BackendSettings,
    ClaudeCodeSettings,
    CozeSettings,
    OpenClawXSettings,
    OpenCodeSettings,
    SynadiaSettings,
    backend_where,
)
from ._schema import *  # noqa: F403
from ._schema import __all__ as _schema_all
from ._secrets import secret_value
from ._settings import (
    ExecSettings,
    GatewaySettings,
    NatsSettings,
    NodeSettings,
    RuntimeSettings,
    SessionSettings,
    Settings,
)
from ._write import update_config_file

if TYPE_CHECKING:
    from ._holder import ConfigHolder, ReloadResult


def __getattr__(name: str) -> Any:
    # The holder (services' live config) needs asyncio: ~25 ms of every CLI command's start-up.
    if name in ("ConfigHolder", "ReloadResult"):
        from . import _holder

        return getattr(_holder, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CONFIG_FILENAME",
    "config_env",
    "COZE_BASE_URLS",
    "A2ASettings",
    "BackendSettings",
    "ClaudeCodeSettings",
    "CozeSettings",
    "SynadiaSettings",
    "OpenClawXSettings",
    "OpenCodeSettings",
    "backend_where",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MODEL",
    "AgentView",
    "Config",
    "ConfigCheck",
    "ConfigError",
    "ConfigHolder",
    "ExecSettings",
    "GatewaySettings",
    "NatsSettings",
    "NodeSettings",
    "Problem",
    "ReloadResult",
    "RuntimeSettings",
    "SessionSettings",
    "Settings",
    "Severity",
    "config_path",
    "default_workspace",
    "home_dir",
    "load_config",
    "parse_config",
    "parse_config_text",
    "read_config_file",
    "resolve_user_path",
    "secret_value",
    "state_dir",
    "update_config_file",
    *_schema_all,
]
