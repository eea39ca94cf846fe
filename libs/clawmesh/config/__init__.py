"""Configuration: OpenClaw-compatible `openclaw.json` / `clawmesh.json` (JSON5), validated with msgspec.

from clawmesh.config import load_config, parse_config
config = load_config()                 # --config > CLAWMESH_CONFIG_PATH > ~/.clawmesh/clawmesh.json
config = parse_config({"agents": {...}, "bindings": [...]})
"""

from ._errors import ConfigError, Problem
from ._holder import ConfigHolder, ReloadResult
from ._load import load_config, parse_config, parse_config_text, read_config_file
from ._model import DEFAULT_MAX_CONCURRENT, DEFAULT_MODEL, AgentView, Config
from ._paths import CONFIG_FILENAME, config_path, default_workspace, home_dir, resolve_user_path, state_dir
from ._schema import *  # noqa: F403
from ._schema import __all__ as _schema_all
from ._write import update_config_file

__all__ = [
    "CONFIG_FILENAME",
    "DEFAULT_MAX_CONCURRENT",
    "DEFAULT_MODEL",
    "AgentView",
    "Config",
    "ConfigError",
    "ConfigHolder",
    "ReloadResult",
    "Problem",
    "config_path",
    "default_workspace",
    "home_dir",
    "load_config",
    "parse_config",
    "parse_config_text",
    "read_config_file",
    "resolve_user_path",
    "state_dir",
    "update_config_file",
    *_schema_all,
]
