"""The live config of a running service: atomic swaps on reload, the old one kept on errors."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from ._errors import ConfigError
from ._load import load_config, parse_config
from ._model import Config, ConfigCheck

__all__ = ["ConfigHolder", "ReloadResult"]

log = logging.getLogger("clawmesh.config")


class ReloadResult:
    __slots__ = ("changed", "errors", "ok", "version")

    def __init__(self, ok: bool, version: str, changed: bool, errors: list[str]) -> None:
        self.ok = ok
        self.version = version
        self.changed = changed
        self.errors = errors

    def to_dict(self) -> dict[str, object]:
        return {"ok": self.ok, "version": self.version, "changed": self.changed, "errors": self.errors}


class ConfigHolder:
    """Holds the current `Config`. Readers take `holder.current` once per message, so a reload
    applies to subsequent messages and never to one half-processed."""

    def __init__(self, config: Config, path: Path | None, env: Mapping[str, str] | None = None) -> None:
        self.current = config
        self.path = path
        self.env = dict(os.environ) if env is None else dict(env)
        self._mtime = self._stat()
        self._listeners: list[Callable[[Config], None]] = []
        self._reloading = asyncio.Lock()
        self.failed_reloads = 0  # every reload that kept the old config, whatever the reason

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str] | None,
        env: Mapping[str, str] | None = None,
        *,
        checks: Sequence[ConfigCheck],
    ) -> ConfigHolder:
        config = load_config(path, checks=checks, env=env, missing_ok=True)
        return cls(config, config.source, env)

    @classmethod
    def fixed(
        cls,
        data: Mapping[str, object],
        env: Mapping[str, str] | None = None,
        *,
        checks: Sequence[ConfigCheck],
    ) -> ConfigHolder:
        """A holder for an in-memory config (tests, embedded demos)."""
        return cls(parse_config(dict(data), checks=checks, env=env), None, env)

    def on_change(self, listener: Callable[[Config], None]) -> None:
        self._listeners.append(listener)

    def _stat(self) -> float | None:
        try:
            return self.path.stat().st_mtime if self.path else None
        except OSError:
            return None

    def changed_on_disk(self) -> bool:
        mtime = self._stat()
        return mtime is not None and mtime != self._mtime

    def reload(self) -> ReloadResult:
        """Re-read the file and run the checks the current config passed. On any error the
        current config stays, the error is logged and counted, and returned."""
        if self.path is None:
            return ReloadResult(True, self.current.version, False, [])
        self._mtime = self._stat()
        try:
            fresh = load_config(self.path, checks=self.current.checks, env=self.env)
        except Exception as exc:
            return self._failed(exc)
        return self._apply(fresh)

    async def reload_async(self) -> ReloadResult:
        """`reload` with the reading and checking in a worker thread: a large file takes seconds
        to check, and the event loop it would block serves every service of the process.
        Reloads run one at a time; the swap happens on the loop, like every read of `current`."""
        async with self._reloading:
            if self.path is None:
                return ReloadResult(True, self.current.version, False, [])
            self._mtime = self._stat()
            try:
                fresh = await asyncio.to_thread(
                    load_config, self.path, checks=self.current.checks, env=self.env
                )
            except Exception as exc:
                return self._failed(exc)
            return self._apply(fresh)

    def _failed(self, exc: Exception) -> ReloadResult:
        self.failed_reloads += 1
        if isinstance(exc, ConfigError):
            errors = [str(p) for p in exc.problems] or [str(exc)]
            log.error("config reload failed, keeping version %s: %s", self.current.version, "; ".join(errors))
        else:
            errors = [f"{type(exc).__name__}: {exc}"]
            log.exception("config reload failed unexpectedly, keeping version %s", self.current.version)
        return ReloadResult(False, self.current.version, False, errors)

    def _apply(self, fresh: Config) -> ReloadResult:
        changed = fresh.version != self.current.version
        if changed:
            self.current = fresh
            log.info("config reloaded: version %s", fresh.version)
            for listener in self._listeners:
                try:
                    listener(fresh)
                except Exception:  # one listener's bug must not keep the others from hearing
                    log.exception("config listener %r failed on version %s", listener, fresh.version)
        return ReloadResult(True, fresh.version, changed, [])
