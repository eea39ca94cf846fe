"""Command groups whose sub-commands are imported only when they run.

Importing every command module costs more start-up than most commands need (nats, rich tables,
the gateway's service code): a group made by `lazy_group` knows its sub-commands by name and
one-line help, and imports a command's module when the command is resolved (run, or asked
for its own `--help`). `clawmesh --help` lists them from the table without importing any.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from difflib import get_close_matches
from typing import Any, ClassVar

import typer
from typer import _click
from typer._click.exceptions import UsageError
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup

__all__ = ["LazyCommand", "LazyGroup", "lazy_group", "load_command"]


@dataclass(frozen=True)
class LazyCommand:
    """`target` is "package.module:attribute": a `typer.Typer` (a sub-group) or a command
    function. `help` is the line `--help` shows for it; a test checks it is the command's own."""

    target: str
    help: str


def load_command(name: str, entry: LazyCommand) -> _click.Command:
    """Import `entry.target` and make it the click command `name`, exactly as registering it on
    the parent with `add_typer`/`command` would (plain help: no rich markup)."""
    module, _, attribute = entry.target.partition(":")
    obj: Any = getattr(importlib.import_module(module), attribute)
    holder = typer.Typer(add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
    # with a callback the holder is a group even when it holds a single command
    holder.callback()(_noop)
    if isinstance(obj, typer.Typer):
        holder.add_typer(obj, name=name)
    else:
        holder.command(name)(obj)
    group = typer.main.get_command(holder)
    assert isinstance(group, TyperGroup)
    return group.commands[name]


def _noop() -> None:
    pass


class LazyGroup(TyperGroup):
    """A typer group with sub-commands from `lazy` (set by `lazy_group`) after registered ones."""

    lazy: ClassVar[Mapping[str, LazyCommand]] = {}

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return [*(name for name in self.commands if name not in self.lazy), *self.lazy]

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        cmd = self.commands.get(cmd_name)
        if cmd is None and cmd_name in self.lazy:
            cmd = self.commands[cmd_name] = load_command(cmd_name, self.lazy[cmd_name])
        return cmd

    def resolve_command(
        self, ctx: _click.Context, args: list[str]
    ) -> tuple[str | None, _click.Command | None, list[str]]:
        try:
            return self._click_resolve_command(ctx, args)
        except UsageError as exc:
            # typer suggests from the loaded commands only; suggest from every name
            matches = get_close_matches(args[0], self.list_commands(ctx)) if args else []
            if matches:
                exc.message = (
                    exc.message.rstrip(".") + ". Did you mean " + ", ".join(map(repr, matches)) + "?"
                )
            raise

    def format_commands(self, ctx: _click.Context, formatter: _click.HelpFormatter) -> None:
        """As typer lists them, with the table's help for commands not imported yet."""
        names = [n for n in self.list_commands(ctx) if n in self.lazy or not self.commands[n].hidden]
        if not names:
            return
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            cmd = self.commands.get(name)
            short = (
                cmd.get_short_help_str(limit)
                if cmd is not None
                else make_default_short_help(self.lazy[name].help, limit)
            )
            rows.append((name, short))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


def lazy_group(commands: Mapping[str, LazyCommand]) -> type[LazyGroup]:
    """A `LazyGroup` class for `typer.Typer(cls=…)` with these lazily imported sub-commands.

    The table is used as it is when the command line runs, so a composition root may still add
    to it (clawmesh_gateway adds `up` and `service`)."""
    return type("LazyGroup", (LazyGroup,), {"lazy": commands})
