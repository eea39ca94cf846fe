"""An OpenAI `messages` array as one agent turn, the way OpenClaw builds it.

The agent keeps its own transcript, but an OpenAI client sends the whole conversation every
time (and without `user` each request is a new session), so the turn's text carries the
conversation: earlier messages under a history marker, then the current one (the last user
or tool message). A single user message is sent as it is. System and developer messages
become extra system prompt; assistant tool calls and `role: "tool"` results are rendered as
lines (`Tool:<call id>: <result>`) so that a client-side tool loop continues in the next
request.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import msgspec

__all__ = [
    "ChatMessageIn",
    "ContentPart",
    "ImageUrl",
    "Prompt",
    "PromptError",
    "ToolCallIn",
    "build_prompt",
]

HISTORY_MARKER: Final = "[Chat messages since your last reply - for context]"
CURRENT_MARKER: Final = "[Current message - respond to this]"
IMAGE_ONLY: Final = "User sent image(s) with no text."


class ImageUrl(msgspec.Struct):
    url: str = ""
    detail: str | None = None


class ContentPart(msgspec.Struct):
    """One part of a message's content: text, or an image (`image_url`); others are skipped."""

    type: str = ""
    text: str | None = None
    image_url: str | ImageUrl | None = None


class FunctionCallIn(msgspec.Struct):
    name: str = ""
    arguments: Any = None


class ToolCallIn(msgspec.Struct):
    id: str = ""
    type: str = "function"
    function: FunctionCallIn | None = None


class ChatMessageIn(msgspec.Struct):
    role: str
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[ToolCallIn] | None = None


class PromptError(ValueError):
    """The messages do not make a turn; the message says why, `param` where."""

    def __init__(self, message: str, param: str = "messages") -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True, slots=True)
class Prompt:
    text: str
    system: str  # the request's system/developer messages, joined
    image_urls: tuple[str, ...]  # `image_url` parts of the current user message


def _text(content: str | list[ContentPart] | None) -> str:
    if isinstance(content, str):
        return content
    if not content:
        return ""
    return "\n".join(p.text for p in content if p.type in ("text", "input_text") and p.text is not None)


def _image_urls(content: str | list[ContentPart] | None, index: int) -> tuple[str, ...]:
    if not isinstance(content, list):
        return ()
    urls: list[str] = []
    for j, part in enumerate(content):
        if part.type != "image_url":
            continue
        raw = part.image_url.url if isinstance(part.image_url, ImageUrl) else part.image_url
        if not raw or not raw.strip():
            raise PromptError(f"messages[{index}].content[{j}]: image_url part is missing a valid URL")
        urls.append(raw.strip())
    return tuple(urls)


def _arguments(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return msgspec.json.encode(value).decode()


def _tool_calls(message: ChatMessageIn) -> str:
    lines = []
    for call in message.tool_calls or ():
        if not call.id.strip() or call.function is None or not call.function.name.strip():
            continue
        lines.append(
            f"tool_call id={call.id.strip()} name={call.function.name.strip()} "
            f"arguments={_arguments(call.function.arguments)}"
        )
    return "\n".join(lines)


def build_prompt(messages: list[ChatMessageIn]) -> Prompt:
    """The turn for these messages (PromptError when there is no user or tool message)."""
    current = -1
    for i in range(len(messages) - 1, -1, -1):
        if messages[i].role in ("user", "tool", "function"):
            current = i
            break
    if current < 0:
        raise PromptError("messages must contain a user message")
    images = _image_urls(messages[current].content, current) if messages[current].role == "user" else ()
    system: list[str] = []
    entries: list[tuple[str, str, bool]] = []  # role, "Sender: body" line, whether it is the current one
    for i, message in enumerate(messages[: current + 1]):  # later assistant messages: not context
        role = "tool" if message.role == "function" else message.role
        content = _text(message.content).strip()
        if role in ("system", "developer"):
            if content:
                system.append(content)
            continue
        if role not in ("user", "assistant", "tool"):
            continue
        if role == "user" and not content and images and i == current:
            content = IMAGE_ONLY
        body = "\n".join(
            part for part in (content, _tool_calls(message) if role == "assistant" else "") if part
        )
        call_id = (message.tool_call_id or "").strip()
        name = (message.name or "").strip()
        is_result = role == "tool" and bool(call_id or name)
        if not body and not is_result and i != current:
            continue
        if role == "assistant":
            sender = "Assistant"
        elif role == "user":
            sender = "User"
        else:
            sender = f"Tool:{call_id}" if call_id else f"Tool:{name}" if name else "Tool"
        entries.append((role, f"{sender}: {body}" if i != current else body, i == current))
    history = [line for _, line, is_current in entries if not is_current]
    role, body, _ = next(e for e in entries if e[2])
    if role == "tool":
        call_id = (messages[current].tool_call_id or messages[current].name or "").strip()
        body = f"Tool:{call_id}: {body}" if call_id else f"Tool: {body}"
    elif history:
        body = f"User: {body}"
    text = body if not history else "\n".join([HISTORY_MARKER, *history, "", CURRENT_MARKER, body])
    return Prompt(text=text, system="\n\n".join(system), image_urls=images)
