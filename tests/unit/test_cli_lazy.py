"""The command line imports a command's module only when that command runs, and shows the same
help, suggestions and option values as if every command were registered up front."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer import _coercion
from typer.core import TyperGroup
from typer.models import OptionInfo
from typer.testing import CliRunner

from clawmesh.cli import _coerce
from clawmesh.cli._lazy import LazyGroup, load_command
from clawmesh_gateway.cli import app


def _root() -> TyperGroup:
    group = typer.main.get_command(app)
    assert isinstance(group, LazyGroup)
    return group


def _lazy_groups() -> list[tuple[str, LazyGroup]]:
    """The root and every lazy sub-group (`config`, whose `reload` is lazy)."""
    root = _root()
    out: list[tuple[str, LazyGroup]] = [("clawmesh", root)]
    for name in root.lazy:
        cmd = load_command(name, root.lazy[name])
        if isinstance(cmd, LazyGroup):
            out.append((f"clawmesh {name}", cmd))
    return out


@pytest.mark.parametrize("where", ["clawmesh", "clawmesh config", "clawmesh sessions"])
def test_every_table_entry_has_its_commands_own_help(where: str) -> None:
    group = dict(_lazy_groups())[where]
    assert isinstance(group, LazyGroup) and group.lazy
    for name, entry in group.lazy.items():
        assert load_command(name, entry).get_short_help_str(1000) == entry.help, f"{where} {name}"


def test_help_lists_every_command_as_if_all_were_loaded() -> None:
    lazy, loaded = _root(), _root()
    for name in loaded.lazy:
        loaded.get_command(typer.Context(loaded), name)
    assert set(loaded.commands) == set(loaded.lazy) and not lazy.commands
    for width in (60, 80, 200):
        help_lazy, help_loaded = (
            g.get_help(typer.Context(g, info_name="clawmesh", terminal_width=width)) for g in (lazy, loaded)
        )
        assert help_lazy == help_loaded
    assert not lazy.commands  # listing them did not import them
    for name in ("route", "agents", "sessions", "config", "up", "service"):
        assert f"\n  {name} " in help_lazy


def test_a_typo_is_answered_with_the_closest_lazy_command() -> None:
    result = CliRunner().invoke(app, ["agnets"])
    assert result.exit_code == 2
    assert "No such command 'agnets'. Did you mean 'agents'?" in result.output


_PROBE = """
import sys
sys.argv = ["clawmesh", *sys.argv[1:]]
from clawmesh_gateway.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
loaded = sorted(
    m for m in sys.modules
    if m.startswith(("clawmesh.cli._", "clawmesh_gateway._", "nats", "rich", "pydantic", "asyncio"))
)
print("LOADED", code, " ".join(loaded))
"""


def _loaded(tmp_path: Path, *args: str) -> tuple[int, set[str]]:
    env = {"HOME": str(tmp_path), "CLAWMESH_STATE_DIR": str(tmp_path / "state"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, env=env, timeout=60
    )
    line = proc.stdout.splitlines()[-1].split(" ")
    assert line[0] == "LOADED", proc.stdout + proc.stderr
    return int(line[1]), set(line[2:])


def test_route_imports_only_its_own_command_module(tmp_path: Path) -> None:
    code, loaded = _loaded(tmp_path, "route", "--channel", "api", "--peer", "direct:alice", "--role", "r")
    assert code == 0
    assert {m for m in loaded if m.startswith(("clawmesh.cli._", "clawmesh_gateway._"))} == {
        "clawmesh.cli._app",
        "clawmesh.cli._coerce",
        "clawmesh.cli._common",
        "clawmesh.cli._lazy",
        "clawmesh.cli._route_cmd",
    }
    # no NATS client, rich, pydantic (typer's coercion) or asyncio for a local command
    assert not {m.split(".")[0] for m in loaded} & {"nats", "rich", "pydantic", "asyncio"}


def test_help_imports_no_command_module(tmp_path: Path) -> None:
    code, loaded = _loaded(tmp_path, "--help")
    assert code == 0
    assert loaded == {
        "clawmesh.cli._app",
        "clawmesh.cli._coerce",
        "clawmesh.cli._common",
        "clawmesh.cli._lazy",
    }


# --- option values: typer's own coercion and the pydantic-free fast path agree -----------------


@pytest.mark.parametrize(
    ("annotation", "value"),
    [
        (str, "alice"),
        (str, ""),
        (str, "日本 ☃"),
        (str, b"bytes"),
        (str, 42),
        (list[str], ("a", "b")),
        (list[str], ["a"]),
        (list[str], "single"),
        (list[str], (b"x", "y")),
        (bool, True),
        (bool, False),
        (bool, "yes"),
        (bool, " 0 "),
        (bool, ""),
    ],
)
def test_fast_coercion_gives_typers_values(annotation: Any, value: Any) -> None:
    descriptor = _coercion.resolve_type_descriptor(annotation, OptionInfo())
    param = typer.core.TyperOption(
        param_decls=["--x"], type_descriptor=descriptor, multiple=annotation is list[str]
    )
    ctx = typer.Context(typer.core.TyperCommand("c"))
    fast = _coerce._build(descriptor)
    assert isinstance(fast, _coerce._Deferred)
    expected = _coerce._typer_build(descriptor)._coerce_value(value, param=param, ctx=ctx)
    got = fast._coerce_value(value, param=param, ctx=ctx)
    assert got == expected and type(got) is type(expected)


def test_other_annotations_keep_typers_coercion() -> None:
    for annotation in (int, Path, float):
        descriptor = _coercion.resolve_type_descriptor(annotation, OptionInfo())
        assert not isinstance(_coerce._build(descriptor), _coerce._Deferred)
