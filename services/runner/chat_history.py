"""Group chatter since the bot's last answer, in front of the message it answers (OpenClaw's
`historyLimit`; `InboundMessage.history`, kept by ingress). The block is OpenClaw's: its label
with the marker its tools strip injected context by, then one line per message as its chat
windows print them (`#<id> <time> <sender>: <body> [<media types>]`). It reaches the model
only: the transcript keeps what was said to the bot, not the room around it."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Final

from clawmesh.wire import HistoryLine

__all__ = ["LABEL", "with_history"]

LABEL: Final = "Chat history since last reply: ⟦openclaw:ctx⟧"
_SPACE: Final = re.compile(r"\s+")


def _field(value: str) -> str:
    # one line per message whatever it contains; fences cannot open a block of their own
    return _SPACE.sub(" ", value).strip().replace("```", "`\u200b``")


def _line(entry: HistoryLine) -> str:
    details = [f"#{_field(entry.message_id)}" if entry.message_id else ""]
    if entry.ts > 0:
        details.append(time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(entry.ts)))
    head = " ".join(d for d in details if d)
    media = ", ".join(dict.fromkeys(_field(m) for m in entry.media if m))
    content = " ".join(c for c in (_field(entry.body), f"[{media}]" if media else "") if c)
    return f"{head + ' ' if head else ''}{_field(entry.sender) or 'unknown sender'}: {content}"


def with_history(text: str, history: Sequence[HistoryLine]) -> str:
    """`text` with the chatter before it (unchanged without any)."""
    lines = [_line(h) for h in history if h.body.strip() or h.media]
    if not lines:
        return text
    return "\n".join([LABEL, *lines]) + ("\n\n" + text if text else "")
