"""The offline `echo` provider: **not a model**.

It answers `echo: <last user message>` without any network access or delay, so that clawmesh
runs out of the box (the default model when none is configured), demos need no API key, and
benchmarks measure clawmesh rather than a model. Any model id works: `echo/default`,
`echo/anything`.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from typing import Final

from ._types import (
    AssistantMessage,
    ChatMessage,
    Credential,
    ModelRequest,
    StreamEvent,
    StreamStop,
    TextDelta,
    ToolResultMessage,
    Usage,
    UserMessage,
)

__all__ = ["EchoProvider", "echo_reply"]

# Split right before each word that follows whitespace: the pieces keep their spacing, so
# they concatenate back to the exact reply.
_WORD_START: Final = re.compile(r"(?<=\s)(?=\S)")


def echo_reply(messages: Sequence[ChatMessage]) -> str:
    """`echo: <text of the last user message>` (and how many images it has, of which types),
    or what the last tool returned."""
    if messages and isinstance(messages[-1], ToolResultMessage):
        result = messages[-1]
        return f"echo: tool {result.name} returned: {result.content}"
    for message in reversed(messages):
        if isinstance(message, UserMessage):
            seen = f" [{len(message.images)} image(s): {', '.join(i.mime for i in message.images)}]"
            return f"echo: {message.text}" + (seen if message.images else "")
    return "echo: "


def _words(text: str) -> int:
    return len(text.split())


def _text_of(message: ChatMessage) -> str:
    if isinstance(message, UserMessage | AssistantMessage):
        return message.text
    return message.content


class EchoProvider:
    """Deterministic stand-in for a model (see the module docstring). Needs no key."""

    name = "echo"

    async def stream(self, request: ModelRequest, credential: Credential) -> AsyncIterator[StreamEvent]:
        reply = echo_reply(request.messages)
        for piece in _WORD_START.split(reply):
            if piece:
                yield TextDelta(piece)
        # Word counts stand in for token counts: deterministic and good enough for accounting demos.
        prompt = " ".join([request.system, *(_text_of(m) for m in request.messages)])
        yield StreamStop("end_turn", usage=Usage(input_tokens=_words(prompt), output_tokens=_words(reply)))

    async def aclose(self) -> None:
        """Nothing to close; present so that every provider can be closed alike."""

    def __repr__(self) -> str:
        return "<EchoProvider (offline, not a model)>"
