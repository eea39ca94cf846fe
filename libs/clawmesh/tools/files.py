"""File tools confined to one directory (the agent's workspace, or its sandbox's).

Absolute paths outside the root, `..` and symlinks that lead out are refused with a message
the model (and the user reading the transcript) understands. Paths under the sandbox's
working directory (`/workspace/...`) are accepted too: that is what the model sees in exec.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Final

__all__ = ["FileToolError", "Workspace"]

MAX_READ_BYTES: Final = 256 * 1024
MAX_LIST_ENTRIES: Final = 1000


class FileToolError(Exception):
    """A refused or failed file operation; `code` is machine-readable, str() is for humans."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Workspace:
    root: Path
    writable: bool = True
    aliases: tuple[str, ...] = ("/workspace",)

    def resolve(self, raw: str) -> Path:
        """The real path for `raw`, guaranteed inside the root (symlinks resolved)."""
        text = (raw or "").strip()
        if not text:
            raise FileToolError("invalid_path", "path is empty")
        if "\x00" in text:
            raise FileToolError("invalid_path", "path contains a NUL byte")
        for alias in self.aliases:
            if text == alias or text.startswith(alias.rstrip("/") + "/"):
                text = text[len(alias.rstrip("/")) :].lstrip("/") or "."
                break
        root = Path(os.path.realpath(self.root))
        candidate = Path(text)
        if not candidate.is_absolute():
            candidate = root / candidate
        resolved = Path(os.path.realpath(candidate))
        if resolved != root and root not in resolved.parents:
            if Path(raw).is_absolute():
                why = "absolute paths must stay inside the workspace"
            elif ".." in Path(text).parts:
                why = "'..' leads out of the workspace"
            else:
                why = "a symlink on the way leads out of the workspace"
            raise FileToolError("outside_workspace", f"path {raw!r} is outside the agent workspace ({why})")
        return resolved

    def _display(self, path: Path) -> str:
        rel = path.relative_to(os.path.realpath(self.root))
        return str(rel) if str(rel) != "." else "."

    def _require_writable(self, raw: str) -> None:
        if not self.writable:
            raise FileToolError(
                "read_only", f"cannot modify {raw!r}: the workspace is mounted read-only for this agent"
            )

    def read(self, path: str, offset: int | None = None, limit: int | None = None) -> str:
        target = self.resolve(path)
        if target.is_dir():
            raise FileToolError("is_directory", f"{path!r} is a directory (use ls)")
        try:
            with target.open("rb") as fh:
                data = fh.read(MAX_READ_BYTES + 1)
        except FileNotFoundError:
            raise FileToolError("not_found", f"{path!r} does not exist") from None
        except PermissionError:
            raise FileToolError("permission_denied", f"cannot read {path!r}: permission denied") from None
        if b"\x00" in data[:8192]:
            raise FileToolError(
                "binary", f"{path!r} looks like a binary file ({target.stat().st_size} bytes)"
            )
        truncated = len(data) > MAX_READ_BYTES
        text = data[:MAX_READ_BYTES].decode("utf-8", "replace")
        if offset or limit:
            lines = text.splitlines(keepends=True)
            start = max((offset or 1) - 1, 0)
            text = "".join(lines[start : start + limit] if limit else lines[start:])
        if truncated:
            text += f"\n[truncated: file is larger than {MAX_READ_BYTES} bytes; use offset/limit]"
        return text

    def write(self, path: str, content: str) -> str:
        self._require_writable(path)
        target = self.resolve(path)
        if target.is_dir():
            raise FileToolError("is_directory", f"{path!r} is a directory")
        target.parent.mkdir(parents=True, exist_ok=True)
        data = content.encode("utf-8")
        target.write_bytes(data)
        return f"wrote {len(data)} bytes to {self._display(target)}"

    def edit(self, path: str, old_text: str, new_text: str, replace_all: bool = False) -> str:
        """Exact-string replacement; the old text must occur exactly once unless replace_all."""
        self._require_writable(path)
        if not old_text:
            raise FileToolError("invalid_arguments", "oldText must not be empty")
        target = self.resolve(path)
        try:
            text = target.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise FileToolError("not_found", f"{path!r} does not exist") from None
        count = text.count(old_text)
        if count == 0:
            raise FileToolError(
                "no_match", f"oldText was not found in {path!r}; read the file and copy the exact text"
            )
        if count > 1 and not replace_all:
            raise FileToolError(
                "ambiguous", f"oldText occurs {count} times in {path!r}; include more context so it is unique"
            )
        target.write_text(text.replace(old_text, new_text), encoding="utf-8")
        return f"replaced {count if replace_all else 1} occurrence(s) in {self._display(target)}"

    def ls(self, path: str = ".") -> str:
        target = self.resolve(path or ".")
        if not target.is_dir():
            raise FileToolError("not_a_directory", f"{path!r} is not a directory")
        entries = sorted(target.iterdir(), key=lambda p: p.name)
        lines = [f"{p.name}/" if p.is_dir() else p.name for p in entries[:MAX_LIST_ENTRIES]]
        if len(entries) > MAX_LIST_ENTRIES:
            lines.append(f"[{len(entries) - MAX_LIST_ENTRIES} more entries not shown]")
        return "\n".join(lines) if lines else "(empty directory)"

    def glob(self, pattern: str, path: str = ".") -> str:
        if not pattern or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise FileToolError(
                "invalid_pattern", f"pattern {pattern!r} must be relative and stay inside the workspace"
            )
        base = self.resolve(path or ".")
        root = Path(os.path.realpath(self.root))
        found = []
        for match in sorted(base.glob(pattern)):
            real = Path(os.path.realpath(match))
            if real == root or root in real.parents:  # a symlinked match may point outside
                found.append(str(match.relative_to(root)))
            if len(found) >= MAX_LIST_ENTRIES:
                break
        return "\n".join(found) if found else f"no files match {pattern!r}"
