"""Configuration: OpenClaw-compatible `openclaw.json` / `clawmesh.json` (JSON5), validated with msgspec.

The ground floor: schema, loading and resolved settings; it imports no other domain. Routing and
sandbox judge their parts of a config through checks the caller hands in:

from clawmesh.checks import default_checks
from clawmesh.config import load_config, parse_config
config = load_config(checks=default_checks())   # --config > CLAWMESH_CONFIG_PATH > ~/.clawmesh/clawmesh.json
config = parse_config({"agents": {...}, "bindings": [...]}, checks=default_checks())
config.settings.runtime.turn_timeout             # every default applied once, at load
"""

from ._errors import ConfigError, Problem, Severity
from ._holder import ConfigHolder, ReloadResult
from ._load import load_config, parse_config, parse_config_text, read_config_file
from ._model import DEFAULT_MAX_CONCURRENT, DEFAULT_MODEL, AgentView, Config, ConfigCheck
from ._paths import CONFIG_FILENAME, config_path, default_workspace, home_dir, resolve_user_path, state_dir
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

__all__ = [
    "CONFIG_FILENAME",
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
