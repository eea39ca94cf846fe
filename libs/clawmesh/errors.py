"""One error type for everything that ends up in front of a user or on the wire, and one way to
do something "best effort" without hiding that it failed.

`ClawmeshError(code, message, hint)`: `code` is from the wire vocabulary (`wire.ErrorCode`),
`message` says what went wrong, `hint` what to change. Subclasses exist only where a caller has
to catch one case (e.g. `routing.AgentSelectionRequired`).

`best_effort(counters, "turn_status_write")`: a context manager for work whose failure must not
fail the caller (a status write after the reply is stored, releasing a lease early, closing a
subscription). A failure is logged as a warning naming the operation and counted as
`best_effort_failed.<operation>` in the service's counters, which `$SRV.STATS` reports, so it is
never silent. It works around `await`s too (it is a plain `with`). Cancellation and other
`BaseException`s pass through.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from types import TracebackType
from typing import Final

from .wire import ErrorCode

__all__ = ["BEST_EFFORT_FAILED", "ClawmeshError", "best_effort"]

BEST_EFFORT_FAILED: Final = "best_effort_failed"

_log = logging.getLogger("clawmesh.best_effort")


class ClawmeshError(Exception):
    """A failure with a machine-readable `code`, a `message` for people and an optional `hint`."""

    def __init__(self, code: ErrorCode, message: str, hint: str = "") -> None:
        super().__init__(f"{message} {hint}".strip())
        self.code: ErrorCode = code
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message, "hint": self.hint}


class best_effort:
    """Run the `with` body; if it raises an `Exception`, log a warning and count it instead.

    `counters`: the service's counters (`ctx.counters`), or None where there are none (then
    the failure is only logged). `operation`: a short snake_case name, the counter's suffix.
    """

    __slots__ = ("_counters", "_log", "_operation")

    def __init__(
        self,
        counters: MutableMapping[str, int] | None,
        operation: str,
        *,
        log: logging.Logger | None = None,
    ) -> None:
        self._counters = counters
        self._operation = operation
        self._log = log or _log

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None or not isinstance(exc, Exception):
            return False
        if self._counters is not None:
            key = f"{BEST_EFFORT_FAILED}.{self._operation}"
            self._counters[key] = self._counters.get(key, 0) + 1
        self._log.warning(
            "%s failed (best effort, carrying on): %s: %s",
            self._operation,
            type(exc).__name__,
            exc,
            exc_info=self._log.isEnabledFor(logging.DEBUG),
        )
        return True
