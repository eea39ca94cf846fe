"""`runnerType: claude_code`: the local Claude Code CLI, one process per turn:
`claude -p --output-format stream-json --verbose --include-partial-messages [--resume <id>]`
with the prompt on stdin, run in the agent's working directory.

The CLI keeps its sessions per working directory, so every turn of an agent runs in the same
one and resumes the session the previous turn reported (`session_id`). Text deltas come from
the partial-message events; the final `result` line is authoritative for the reply, the cost
and the usage. An API error there (`is_error`, `api_error_status` 429/5xx/529) is failover-
worthy; a session the CLI no longer has is started again without `--resume`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

import msgspec

from clawmesh.config import ClaudeCodeSettings

from ._base import BackendError, OnDelta, ProxyResult, ProxyTurn, failover_worthy_status

__all__ = ["ClaudeCodeBackend"]

log = logging.getLogger("clawmesh.runner.claude_code")

_KILL_AFTER: Final = 3.0
_LINE_LIMIT: Final = 16 * 1024 * 1024  # a tool result line can be large


class _SessionGone(Exception):
    pass


class ClaudeCodeBackend:
    kind = "claude_code"

    async def aclose(self) -> None:
        return None

    async def run(self, turn: ProxyTurn, on_delta: OnDelta) -> ProxyResult:
        try:
            return await self._once(turn, on_delta, turn.remote_session)
        except _SessionGone:
            log.info("claude_code: session %s is gone; starting a new one", turn.remote_session)
            return await self._once(turn, on_delta, None)

    async def _once(self, turn: ProxyTurn, on_delta: OnDelta, resume: str | None) -> ProxyResult:
        settings = turn.settings
        assert isinstance(settings, ClaudeCodeSettings)
        args = [
            settings.command,
            "-p",
            "--output-format",
            "stream-json",
            "--verbose",
            "--include-partial-messages",
        ]
        if resume:
            args += ["--resume", resume]
        if settings.model:
            args += ["--model", settings.model]
        if settings.permission_mode:
            args += ["--permission-mode", settings.permission_mode]
        settings.working_directory.mkdir(parents=True, exist_ok=True)
        try:
            proc = await asyncio.create_subprocess_exec(
                *args,
                cwd=settings.working_directory,
                env={**turn.env, "PWD": str(settings.working_directory)},
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=_LINE_LIMIT,
                start_new_session=True,
            )
        except OSError as exc:
            raise BackendError(
                f"cannot run the Claude Code CLI ({settings.command}): {exc}",
                reason="unavailable",
                failover=True,
                hint="install it (npm install -g @anthropic-ai/claude-code) or set the agent's claudeCode.command",
            ) from None
        try:
            return await self._talk(proc, turn.text, on_delta, resume)
        except BaseException:
            await _stop(proc)
            raise

    async def _talk(
        self, proc: asyncio.subprocess.Process, prompt: str, on_delta: OnDelta, resume: str | None
    ) -> ProxyResult:
        assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
        proc.stdin.write(prompt.encode())
        await proc.stdin.drain()
        proc.stdin.close()
        stderr = asyncio.create_task(proc.stderr.read())
        streamed: list[str] = []
        streamed_this_message = False
        session_id = resume
        result: dict[str, Any] | None = None
        async for raw in proc.stdout:
            try:
                line: Any = msgspec.json.decode(raw)
            except msgspec.DecodeError:
                continue  # the CLI prints nothing else on stdout; tolerate it anyway
            if not isinstance(line, dict):
                continue
            kind = line.get("type")
            session_id = line.get("session_id") or session_id
            if kind == "stream_event" and line.get("parent_tool_use_id") is None:
                event = line.get("event") or {}
                if event.get("type") == "message_start":
                    streamed_this_message = False
                delta = event.get("delta") or {}
                if event.get("type") == "content_block_delta" and delta.get("type") == "text_delta":
                    text = delta.get("text") or ""
                    if text:
                        streamed_this_message = True
                        streamed.append(text)
                        await on_delta(text)
            elif kind == "assistant" and line.get("parent_tool_use_id") is None:
                message = line.get("message") or {}
                # "<synthetic>": the CLI's own message saying an API call failed; the result
                # line reports that failure, and forwarding it would rule out a failover
                if not streamed_this_message and message.get("model") != "<synthetic>":
                    for block in message.get("content") or ():
                        if isinstance(block, dict) and block.get("type") == "text" and block.get("text"):
                            streamed.append(block["text"])
                            await on_delta(block["text"])
                streamed_this_message = False
            elif kind == "result":
                result = line
        await proc.wait()
        err = (await stderr).decode("utf-8", "replace").strip()
        if result is None:
            if resume and "No conversation found" in err:
                raise _SessionGone
            raise BackendError(
                f"the Claude Code CLI exited with status {proc.returncode} without a result: {err[-300:]}",
                reason="unavailable",
                failover=True,
            )
        return _outcome(result, "".join(streamed), session_id, resume, err)


def _outcome(
    result: dict[str, Any], streamed: str, session_id: str | None, resume: str | None, err: str
) -> ProxyResult:
    usage = result.get("usage") or {}
    text = result.get("result")
    if result.get("is_error") or str(result.get("subtype", "success")) != "success":
        message = str(text or "; ".join(map(str, result.get("errors") or ())) or err or result.get("subtype"))
        if resume and "No conversation found" in (message + err):
            raise _SessionGone
        status = result.get("api_error_status")
        lowered = message.lower()
        overloaded = "overloaded" in lowered or "rate limit" in lowered or "connection" in lowered
        failover = (isinstance(status, int) and failover_worthy_status(status)) or overloaded
        reason = "rate_limit" if status == 429 else ("overloaded" if failover else "claude_code_error")
        raise BackendError(f"Claude Code: {message[:500]}", reason=reason, failover=failover)
    cost = result.get("total_cost_usd")
    return ProxyResult(
        text=text if isinstance(text, str) else streamed,
        remote_session=result.get("session_id") or session_id,
        usage=(
            int(usage.get("input_tokens") or 0)
            + int(usage.get("cache_read_input_tokens") or 0)
            + int(usage.get("cache_creation_input_tokens") or 0),
            int(usage.get("output_tokens") or 0),
        ),
        model=_model_of(result) or "claude_code",
        cost_usd=float(cost) if isinstance(cost, int | float) else None,
    )


def _model_of(result: dict[str, Any]) -> str:
    models = result.get("modelUsage")
    if isinstance(models, dict) and models:
        return str(next(iter(models)))
    return ""


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """The turn was cancelled or failed: the CLI (and what it started) stops too."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        await asyncio.shield(asyncio.wait_for(proc.wait(), _KILL_AFTER))
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
