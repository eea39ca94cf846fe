"""Shared CLI plumbing: the global --config option, loading, output, argument parsing."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import typer

from ..safetext import for_terminal

if TYPE_CHECKING:
    from rich.console import Console

    from ..config import Config, ConfigError

__all__ = [
    "CliError",
    "State",
    "console",
    "err_console",
    "fail",
    "load",
    "parse_bind",
    "parse_peer",
    "print_json",
    "report_config_error",
    "state",
]

_UNBOUNDED = 1_000_000


def _rich_console(stderr: bool) -> Console:
    from rich.console import Console, ConsoleDimensions
    from rich.text import Text

    class _Console(Console):
        """No markup or emoji codes in anything printed (data such as `agent:family:main` stays
        as is), and no width limit when the output is not a terminal, so tables never cut or
        wrap an id that a script or the next command needs. Every string printed, a table's
        cells too, has its control characters escaped (`for_terminal`): what a chat user or a
        model wrote cannot drive the operator's terminal; rich's own styling still can."""

        def render_str(self, text: str, **kwargs: Any) -> Text:
            return super().render_str(for_terminal(text), **kwargs)

        def _unbounded_size(self) -> ConsoleDimensions:
            size = Console.size.fget(self)  # type: ignore[attr-defined]
            return size if self.is_terminal else ConsoleDimensions(_UNBOUNDED, size.height)

        size = property(_unbounded_size, Console.size.fset)  # type: ignore[attr-defined]

    return _Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False)


class _Output:
    """`print` as our rich console prints, without importing rich (~50 ms of start-up) for
    plain text: text is written with its control characters escaped, as rich's render_str does
    here. Tables and other renderables (and tabs, which rich expands by display width) go
    through rich."""

    def __init__(self, *, stderr: bool = False) -> None:
        self._stderr = stderr

    @property
    def file(self) -> TextIO:
        return sys.stderr if self._stderr else sys.stdout

    @cached_property
    def rich(self) -> Console:
        return _rich_console(self._stderr)

    def print(
        self, *objects: Any, sep: str = " ", end: str = "\n", markup: bool | None = None, **kwargs: Any
    ) -> None:
        if kwargs or markup or not all(isinstance(o, str) and "\t" not in o for o in objects):
            self.rich.print(*objects, sep=sep, end=end, markup=markup, **kwargs)
            return
        self.file.write(for_terminal(sep.join(objects)) + end)
        self.file.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.rich, name)


console = _Output()
err_console = _Output(stderr=True)


class CliError(Exception):
    """A user-facing error: printed as one line (`error: …`), exit code 1 (or `code`)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class State:
    config: str | None = None


def state(ctx: typer.Context) -> State:
    obj = ctx.find_root().obj
    return obj if isinstance(obj, State) else State()


def fail(message: str, code: int = 1) -> NoReturn:
    raise CliError(message, code)


def _chosen_config(ctx: typer.Context) -> str | None:
    """--config, else $CLAWMESH_CONFIG_PATH (or $OPENCLAW_CONFIG_PATH), else the config of the gateway `clawmesh up` runs
    on this state dir (so `up --demo` and the CLI describe the same agents), else None (the
    default path)."""
    from ..config import config_env, state_dir

    explicit = state(ctx).config
    if explicit or config_env(os.environ):
        return explicit
    from ..localgateway import running

    live = running(state_dir())
    return live.config if live is not None else None


def load(ctx: typer.Context, *, missing_ok: bool = True) -> Config:
    """The effective config; a missing default file is an empty config, a missing --config is an error."""
    from ..checks import default_checks
    from ..config import load_config

    return load_config(_chosen_config(ctx), checks=default_checks(), missing_ok=missing_ok)


def config_file(ctx: typer.Context) -> Path:
    from ..config import config_path

    return config_path(_chosen_config(ctx))


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def parse_peer(value: str | None, option: str = "--peer") -> dict[str, str] | None:
    """`kind:id` → {"kind", "id"}; kind is direct|dm|group|channel."""
    if value is None:
        return None
    kind, sep, pid = value.partition(":")
    kind = kind.strip().lower()
    if not sep or not pid or kind not in ("direct", "dm", "group", "channel"):
        fail(f"{option} expects kind:id with kind one of direct|group|channel (got {value!r})", 2)
    return {"kind": kind, "id": pid}


def parse_bind(value: str) -> tuple[str, str | None]:
    """`channel[:accountId]` → (channel, accountId or None); `ch:*` means every account."""
    channel, sep, account = value.partition(":")
    channel = channel.strip().lower()
    if not channel or (sep and not account.strip()):
        fail(f"--bind expects channel[:accountId] (got {value!r})", 2)
    return channel, account.strip() if sep else None


def report_config_error(exc: ConfigError) -> None:
    count = len(exc.problems)
    where = f" in {exc.source}" if exc.source else ""
    err_console.print(f"error: {count} config error{'s' if count != 1 else ''}{where}:", markup=False)
    for problem in exc.problems:
        err_console.print(f"  {problem}", markup=False)
