"""Sessions: per-session sequence/completion state (KV) and transcripts (JetStream)."""

from ._records import (
    DoneRecord,
    PendingReply,
    SessionRecord,
    TranscriptEntry,
    TurnAttempts,
    TurnStatus,
    TxAssistant,
    TxError,
    TxTool,
    TxUser,
)
from ._store import CompletionConflict, SessionStore, Versioned

__all__ = [
    "CompletionConflict",
    "DoneRecord",
    "PendingReply",
    "SessionRecord",
    "SessionStore",
    "TranscriptEntry",
    "TurnAttempts",
    "TurnStatus",
    "TxAssistant",
    "TxError",
    "TxTool",
    "TxUser",
    "Versioned",
]
