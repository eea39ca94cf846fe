"""Config problems: every one carries the JSON path it is about, so a user can find it."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

__all__ = ["ConfigError", "Problem"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One finding about a config file: an error (the file is refused) or a warning."""

    path: str
    message: str
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(ValueError):
    """The config cannot be used; `problems` lists every error found, not only the first, and
    `warnings` the warnings found before loading stopped."""

    def __init__(self, problems: Iterable[Problem], source: str | None = None) -> None:
        found = tuple(problems)
        self.problems: tuple[Problem, ...] = tuple(p for p in found if p.severity == "error")
        # Found along the way; `config validate` shows them with the errors.
        self.warnings: tuple[Problem, ...] = tuple(p for p in found if p.severity == "warning")
        self.source = source
        where = f" in {source}" if source else ""
        count = len(self.problems)
        lines = [f"{count} config error{'s' if count != 1 else ''}{where}:"]
        lines += [f"  {p}" for p in self.problems]
        super().__init__("\n".join(lines))
