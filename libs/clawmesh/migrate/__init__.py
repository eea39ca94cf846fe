"""Migration from OpenClaw: reading its state dir, importing it, exporting back to its format."""

from ._apply import SessionOutcome, copy_file, import_session, session_summary
from ._plan import AgentPlan, FileCopy, ImportPlan, plan_files
from ._source import (
    Problem,
    SourceSession,
    active_branch,
    openclaw_config_path,
    openclaw_state_dir,
    read_sessions,
)
from ._transcript import ImportedTurn, openclaw_index_entry, openclaw_jsonl, to_turns

__all__ = [
    "AgentPlan",
    "FileCopy",
    "ImportPlan",
    "ImportedTurn",
    "Problem",
    "SessionOutcome",
    "SourceSession",
    "active_branch",
    "copy_file",
    "import_session",
    "openclaw_config_path",
    "openclaw_index_entry",
    "openclaw_jsonl",
    "openclaw_state_dir",
    "plan_files",
    "read_sessions",
    "session_summary",
    "to_turns",
]
