"""OpenClaw's exec modes and approvals for host exec: the policy decision (allowlist, safe bins,
ask), the host's approvals document, and the approval requests operators answer."""

from ._approvals_file import (
    APPROVALS_FILE,
    AllowlistEntry,
    ApprovalsFile,
    ApprovalsFileError,
    AskFallback,
    HostPolicy,
)
from ._command import Stage, split_command
from ._evaluate import Verdict, allow_always_entries, evaluate, matches_entry
from ._exposure import HostExecExposure, exposure_line, unapproved_host_exec
from ._safebins import NEVER_SAFE, is_safe_bin_stage
from ._store import ApprovalError, ApprovalRecord, ApprovalStore, Decision, new_approval_id

__all__ = [
    "APPROVALS_FILE",
    "NEVER_SAFE",
    "AllowlistEntry",
    "ApprovalError",
    "ApprovalRecord",
    "ApprovalStore",
    "ApprovalsFile",
    "ApprovalsFileError",
    "AskFallback",
    "Decision",
    "HostExecExposure",
    "HostPolicy",
    "Stage",
    "Verdict",
    "allow_always_entries",
    "evaluate",
    "exposure_line",
    "is_safe_bin_stage",
    "matches_entry",
    "new_approval_id",
    "split_command",
    "unapproved_host_exec",
]
