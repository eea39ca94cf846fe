"""Sessions: per-session sequence/completion state (KV) and transcripts (JetStream)."""

from ._records import (
    DoneRecord,
    SessionRecord,
    TranscriptEntry,
    TurnStatus,
    TxAssistant,
    TxError,
    TxTool,
    TxUser,
)
from ._store import SessionStore, Versioned

__all__ = [
    "DoneRecord",
    "SessionRecord",
    "SessionStore",
    "TranscriptEntry",
    "TurnStatus",
    "TxAssistant",
    "TxError",
    "TxTool",
    "TxUser",
    "Versioned",
]
