"""File tools confined to one directory (the agent's workspace, or its sandbox's).

Absolute paths outside the root, `..` and symlinks that lead out are refused with a message
the model (and the user reading the transcript) understands. A checked path is then opened one
component at a time from the root without following symlinks, so a symlink swapped in after the
check is never followed; only regular files are read or written (a FIFO would block forever). Paths under the sandbox's
working directory (`/workspace/...`) are accepted too: that is what the model sees in exec.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from ..errors import ClawmeshError
from ..wire import ErrorCode
from .patch import AddFile, DeleteFile, PatchError, UpdateFile, apply_hunks, parse_patch

__all__ = ["FileToolError", "Workspace"]

MAX_READ_BYTES: Final = 256 * 1024
MAX_LIST_ENTRIES: Final = 1000
MAX_PATCH_FILE_BYTES: Final = 8 * 1024 * 1024  # a file apply_patch updates is read whole
_ATTEMPTS: Final = 5  # re-checks when a symlink is swapped in between the check and the open
_STEP: Final = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
_FINAL: Final = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC  # O_NONBLOCK: a FIFO must not block open


class _Swapped(Exception):
    """A path component became a symlink after the path was checked."""


class FileToolError(ClawmeshError):
    """A refused or failed file operation; `code` is machine-readable, str() is for humans."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(code, message)


def _not_regular(path: str) -> FileToolError:
    return FileToolError(
        "NOT_REGULAR", f"{path!r} is not a regular file (a FIFO, socket or device); file tools refuse it"
    )


def _require_regular(fd: int, st: os.stat_result, path: str) -> None:
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise _not_regular(path)


@dataclass(frozen=True)
class Workspace:
    root: Path
    writable: bool = True
    aliases: tuple[str, ...] = ("/workspace",)

    def resolve(self, raw: str) -> Path:
        """The real path for `raw`, guaranteed inside the root (symlinks resolved)."""
        text = (raw or "").strip()
        if not text:
            raise FileToolError("INVALID_PATH", "path is empty")
        if "\x00" in text:
            raise FileToolError("INVALID_PATH", "path contains a NUL byte")
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
            raise FileToolError("OUTSIDE_WORKSPACE", f"path {raw!r} is outside the agent workspace ({why})")
        return resolved

    def _display(self, path: Path) -> str:
        rel = path.relative_to(os.path.realpath(self.root))
        return str(rel) if str(rel) != "." else "."

    def _require_writable(self, raw: str) -> None:
        if not self.writable:
            raise FileToolError(
                "READ_ONLY", f"cannot modify {raw!r}: the workspace is mounted read-only for this agent"
            )

    def _walk(self, resolved: Path, *, create: bool) -> tuple[int, str]:
        """An O_PATH descriptor of `resolved`'s parent and its last component ('.' for the root).

        The parent is reached from the root one component at a time without following
        symlinks: `resolved` has none, so a symlink met now was swapped in after `resolve`.
        """
        root = os.path.realpath(self.root)
        parts = resolved.relative_to(root).parts
        fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            for name in parts[:-1]:
                try:
                    step = os.open(name, _STEP, dir_fd=fd)
                except FileNotFoundError:
                    if not create:
                        raise
                    with contextlib.suppress(FileExistsError):
                        os.mkdir(name, dir_fd=fd)
                    step = os.open(name, _STEP, dir_fd=fd)
                os.close(fd)
                fd = step
                mode = os.fstat(fd).st_mode
                if stat.S_ISLNK(mode):
                    raise _Swapped
                if not stat.S_ISDIR(mode):
                    raise NotADirectoryError(errno.ENOTDIR, "Not a directory", name)
        except BaseException:
            os.close(fd)
            raise
        return fd, parts[-1] if parts else "."

    def _open(self, raw: str, flags: int, *, create: bool = False) -> tuple[int, os.stat_result, Path]:
        """Open `raw` inside the workspace: a descriptor, its stat and the resolved path.

        Never follows a symlink that appeared after the path was checked (the check is redone),
        and never blocks on a FIFO: the caller refuses what is not a regular file (or directory).
        """
        for _ in range(_ATTEMPTS):
            resolved = self.resolve(raw)
            try:
                parent, last = self._walk(resolved, create=create)
                try:
                    fd = os.open(last, flags | _FINAL, 0o666, dir_fd=parent)
                finally:
                    os.close(parent)
            except _Swapped:
                continue
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    continue
                if exc.errno == errno.ENXIO:  # a socket, or a FIFO nobody reads
                    raise _not_regular(raw) from None
                raise
            return fd, os.fstat(fd), resolved
        raise FileToolError(
            "PATH_CHANGED", f"{raw!r} kept changing while it was opened (a symlink swapped in, or a loop)"
        )

    def read(self, path: str, offset: int | None = None, limit: int | None = None) -> str:
        try:
            fd, st, _ = self._open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise FileToolError("NOT_FOUND", f"{path!r} does not exist") from None
        except PermissionError:
            raise FileToolError("PERMISSION_DENIED", f"cannot read {path!r}: permission denied") from None
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise FileToolError("IS_DIRECTORY", f"{path!r} is a directory (use ls)")
        _require_regular(fd, st, path)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_READ_BYTES + 1)
        if b"\x00" in data[:8192]:
            raise FileToolError("BINARY", f"{path!r} looks like a binary file ({st.st_size} bytes)")
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
        try:
            fd, st, target = self._open(path, os.O_WRONLY | os.O_CREAT, create=True)
        except IsADirectoryError:
            raise FileToolError("IS_DIRECTORY", f"{path!r} is a directory") from None
        _require_regular(fd, st, path)
        with os.fdopen(fd, "wb") as fh:
            data = content.encode("utf-8")
            fh.truncate(0)
            fh.write(data)
        return f"wrote {len(data)} bytes to {self._display(target)}"

    def open_for_writing(self, path: str) -> BinaryIO:
        """A regular file inside the workspace, emptied and open for writing bytes (created with
        its directories; no symlink on the way is followed)."""
        self._require_writable(path)
        try:
            fd, st, _ = self._open(path, os.O_WRONLY | os.O_CREAT, create=True)
        except IsADirectoryError:
            raise FileToolError("IS_DIRECTORY", f"{path!r} is a directory") from None
        _require_regular(fd, st, path)
        fh = os.fdopen(fd, "wb")
        fh.truncate(0)
        return fh

    def edit(self, path: str, old_text: str, new_text: str, replace_all: bool = False) -> str:
        """Exact-string replacement; the old text must occur exactly once unless replace_all."""
        self._require_writable(path)
        if not old_text:
            raise FileToolError("INVALID_ARGUMENTS", "oldText must not be empty")
        try:
            fd, st, target = self._open(path, os.O_RDWR)
        except FileNotFoundError:
            raise FileToolError("NOT_FOUND", f"{path!r} does not exist") from None
        except IsADirectoryError:
            raise FileToolError("IS_DIRECTORY", f"{path!r} is a directory") from None
        _require_regular(fd, st, path)
        with os.fdopen(fd, "r+", encoding="utf-8") as fh:
            text = fh.read()
            count = text.count(old_text)
            if count == 0:
                raise FileToolError(
                    "NO_MATCH", f"oldText was not found in {path!r}; read the file and copy the exact text"
                )
            if count > 1 and not replace_all:
                raise FileToolError(
                    "AMBIGUOUS",
                    f"oldText occurs {count} times in {path!r}; include more context so it is unique",
                )
            fh.seek(0)
            fh.truncate()
            fh.write(text.replace(old_text, new_text))
        return f"replaced {count if replace_all else 1} occurrence(s) in {self._display(target)}"

    def ls(self, path: str = ".") -> str:
        try:
            fd, st, _ = self._open(path or ".", os.O_RDONLY)
        except (FileNotFoundError, NotADirectoryError):
            raise FileToolError("NOT_A_DIRECTORY", f"{path!r} is not a directory") from None
        try:
            if not stat.S_ISDIR(st.st_mode):
                raise FileToolError("NOT_A_DIRECTORY", f"{path!r} is not a directory")
            with os.scandir(fd) as it:
                entries = sorted(((e.name, e.is_dir()) for e in it), key=lambda e: e[0])
        finally:
            os.close(fd)
        lines = [f"{name}/" if is_dir else name for name, is_dir in entries[:MAX_LIST_ENTRIES]]
        if len(entries) > MAX_LIST_ENTRIES:
            lines.append(f"[{len(entries) - MAX_LIST_ENTRIES} more entries not shown]")
        return "\n".join(lines) if lines else "(empty directory)"

    def glob(self, pattern: str, path: str = ".") -> str:
        if not pattern or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise FileToolError(
                "INVALID_PATTERN", f"pattern {pattern!r} must be relative and stay inside the workspace"
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

    # --- apply_patch ---------------------------------------------------------------------------

    def _entry(self, raw: str) -> Path:
        """The path of `raw` itself inside the workspace: its parent resolved and checked, its
        last component kept (a final symlink is the entry, not what it points to)."""
        resolved_parent = self.resolve(os.path.dirname(raw.rstrip("/")) or ".")
        name = os.path.basename(raw.rstrip("/"))
        if name in ("", ".", ".."):
            raise FileToolError("INVALID_PATH", f"path {raw!r} does not name a file")
        for alias in self.aliases:
            if raw.strip() in (alias, alias.rstrip("/")):
                raise FileToolError("INVALID_PATH", f"path {raw!r} does not name a file")
        return resolved_parent / name

    def _read_whole(self, path: str) -> str:
        try:
            fd, st, _ = self._open(path, os.O_RDONLY)
        except FileNotFoundError:
            raise FileToolError(
                "NOT_FOUND", f"Failed to read file to update {path}: it does not exist"
            ) from None
        if stat.S_ISDIR(st.st_mode):
            os.close(fd)
            raise FileToolError("IS_DIRECTORY", f"{path!r} is a directory")
        _require_regular(fd, st, path)
        with os.fdopen(fd, "rb") as fh:
            data = fh.read(MAX_PATCH_FILE_BYTES + 1)
        if len(data) > MAX_PATCH_FILE_BYTES:
            raise FileToolError(
                "IO_ERROR", f"{path!r} is larger than {MAX_PATCH_FILE_BYTES} bytes; apply_patch refuses it"
            )
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            raise FileToolError("BINARY", f"{path!r} is not UTF-8 text; apply_patch refuses it") from None

    def _exists(self, target: Path) -> bool:
        return os.path.lexists(target)

    def _replace(self, target: Path, content: str | None, *, exclusive: bool = False) -> None:
        """Write `content` to `target` atomically (a temporary file in the same directory, then
        renamed over it), or remove it (None). Reached from the root without following symlinks."""
        for _ in range(_ATTEMPTS):
            try:
                parent, last = self._walk(target, create=content is not None)
            except _Swapped:
                continue
            try:
                if content is None:
                    if stat.S_ISDIR(os.stat(last, dir_fd=parent, follow_symlinks=False).st_mode):
                        raise FileToolError("IS_DIRECTORY", f"{self._display(target)!r} is a directory")
                    os.unlink(last, dir_fd=parent)
                    return
                temp = f".{last}.{os.getpid()}.{os.urandom(4).hex()}.tmp"
                mode = 0o666
                with contextlib.suppress(FileNotFoundError):
                    st = os.stat(last, dir_fd=parent, follow_symlinks=False)
                    mode = stat.S_IMODE(st.st_mode)
                fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _FINAL, mode, dir_fd=parent)
                try:
                    with os.fdopen(fd, "wb") as fh:
                        fh.write(content.encode("utf-8"))
                    if exclusive:
                        # a link fails if the name exists: no file is ever replaced by an Add
                        os.link(temp, last, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
                    else:
                        os.rename(temp, last, src_dir_fd=parent, dst_dir_fd=parent)
                finally:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(temp, dir_fd=parent)
                return
            finally:
                os.close(parent)
        raise FileToolError("PATH_CHANGED", f"{self._display(target)!r} kept changing while it was written")

    def apply_patch(self, patch: str) -> str:
        """Apply an OpenClaw patch. Every operation is planned first against the files as they
        are (a hunk that does not apply, or a path outside the workspace, changes nothing); then
        each file is written atomically, in the patch's order."""
        self._require_writable("apply_patch")
        try:
            ops = parse_patch(patch)
        except PatchError as exc:
            raise FileToolError("INVALID_ARGUMENTS", str(exc)) from None
        planned: dict[Path, str | None] = {}  # the files' contents after the patch (None: gone)
        writes: list[tuple[Path, str | None, bool]] = []
        summary: dict[str, list[str]] = {"A": [], "M": [], "D": []}

        def current(target: Path, raw: str) -> str:
            if target in planned:
                content = planned[target]
                if content is None:
                    raise FileToolError(
                        "NOT_FOUND", f"Failed to read file to update {raw}: deleted earlier in this patch"
                    )
                return content
            return self._read_whole(raw)

        def present(target: Path) -> bool:
            return planned[target] is not None if target in planned else self._exists(target)

        def record(kind: str, target: Path) -> None:
            shown = self._display(target)
            if shown not in summary[kind]:
                summary[kind].append(shown)

        for op in ops:
            match op:
                case AddFile(path=raw, contents=contents):
                    target = self._entry(raw)
                    if present(target):
                        raise FileToolError(
                            "ALREADY_EXISTS",
                            f"Cannot create {self._display(target)}: the file already exists. Use "
                            f'"*** Update File: {self._display(target)}" to change it, or delete it earlier in the same patch.',
                        )
                    # exclusive unless this patch deleted the file first
                    writes.append((target, contents, target not in planned))
                    planned[target] = contents
                    record("A", target)
                case DeleteFile(path=raw):
                    target = self._entry(raw)
                    if not present(target):
                        raise FileToolError("NOT_FOUND", f"Cannot delete {raw}: it does not exist")
                    planned[target] = None
                    writes.append((target, None, False))
                    record("D", target)
                case UpdateFile(path=raw, move_to=move_to, hunks=hunks):
                    target = self.resolve(raw)
                    try:
                        updated = apply_hunks(current(target, raw), hunks, self._display(target))
                    except PatchError as exc:
                        raise FileToolError("NO_MATCH", str(exc)) from None
                    if move_to is not None:
                        destination = self._entry(move_to)
                        if destination != target:
                            if present(destination):
                                raise FileToolError(
                                    "ALREADY_EXISTS",
                                    f"Cannot move {self._display(target)} to {self._display(destination)}: "
                                    "the destination already exists; delete it earlier in the same patch.",
                                )
                            planned[target] = None
                            writes.append((target, None, False))
                            planned[destination] = updated
                            writes.append((destination, updated, False))
                            record("M", destination)
                            continue
                    planned[target] = updated
                    writes.append((target, updated, False))
                    record("M", target)
        for target, content, exclusive in writes:
            try:
                self._replace(target, content, exclusive=exclusive)
            except FileExistsError:
                raise FileToolError(
                    "ALREADY_EXISTS", f"Cannot create {self._display(target)}: the file already exists."
                ) from None
        lines = ["Success. Updated the following files:"]
        lines += [f"{kind} {path}" for kind in ("A", "M", "D") for path in summary[kind]]
        return "\n".join(lines)
