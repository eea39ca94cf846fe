"""Server-sent events from a line stream: Coze writes `event:x` / `data:{…}` without a space,
OpenAI-style servers `data: {…}`; both end an event with a blank line."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

__all__ = ["sse_events"]


async def sse_events(lines: AsyncIterable[str]) -> AsyncIterator[tuple[str, str]]:
    """`(event name or "", data)` per event; comments and ids are skipped."""
    event = ""
    data: list[str] = []
    async for line in lines:
        if not line:
            if data or event:
                yield event, "\n".join(data)
            event, data = "", []
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
    if data or event:
        yield event, "\n".join(data)
