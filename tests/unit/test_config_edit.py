"""CLI config writes change only what changed: comments, key order and layout elsewhere stay byte
for byte; `$include`d sections are written where they live (or refused); an invalid result is
never written."""

from __future__ import annotations

import copy
import difflib
import json
import stat
from pathlib import Path
from typing import Any

import json5
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from clawmesh.checks import default_checks
from clawmesh.cli import app
from clawmesh.config import ConfigError, update_config_file
from clawmesh.config._edit import apply_edits, diff

COMMENTED = """\
// my config: hand-written, keep the comments
{
  // the agents
  agents: {
    defaults: { model: "echo/default" }, // default model
    entries: {
      main: { name: "Main" },
    },
  },
  /* routing */
  bindings: [
    { agentId: "main", match: { channel: "telegram" } }, // tg
  ],
  gateway: { port: 18789 }, // trailing
}
"""


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLAWMESH_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("CLAWMESH_CONFIG_PATH", raising=False)
    cfg = tmp_path / "openclaw.json"

    def run(*args: str, ok: bool = True) -> str:
        result = CliRunner().invoke(app, ["--config", str(cfg), *args])
        assert (result.exit_code == 0) == ok, result.output
        # errors reach `clawmesh.cli.run` (which prints them) as exceptions
        problems = getattr(result.exception, "problems", None)
        return result.output + (" ".join(map(str, problems)) if problems else str(result.exception or ""))

    run.cfg = cfg  # type: ignore[attr-defined]
    return run


def _only_inserted(before: str, after: str) -> list[str]:
    """The lines `after` adds to `before`, asserting nothing of `before` changed or moved."""
    ops = difflib.SequenceMatcher(a=before.splitlines(True), b=after.splitlines(True), autojunk=False)
    added = []
    for op, i1, i2, j1, j2 in ops.get_opcodes():
        assert op in ("equal", "insert"), (op, before.splitlines()[i1:i2], after.splitlines()[j1:j2])
        if op == "insert":
            added.extend(after.splitlines()[j1:j2])
    return added


def test_agents_commands_keep_comments_and_layout(cli: Any, tmp_path: Path) -> None:
    cfg: Path = cli.cfg
    cfg.write_text(COMMENTED)
    cli("agents", "add", "work", "--workspace", "~/ws", "--model", "echo/x", "--non-interactive")
    after_add = cfg.read_text()
    assert _only_inserted(COMMENTED, after_add) == ['      work: { workspace: "~/ws", model: "echo/x" },']
    cli("agents", "bind", "--agent", "work", "--bind", "discord", "--bind", "slack:team1")
    after_bind = cfg.read_text()
    assert _only_inserted(after_add, after_bind) == [
        '    { agentId: "work", match: { channel: "discord" } },',
        '    { agentId: "work", match: { channel: "slack", accountId: "team1" } },',
    ]
    cli("agents", "set-identity", "--agent", "main", "--name", "Boss", "--emoji", "🦞")
    assert cfg.read_text() == after_bind.replace(
        'main: { name: "Main" },', 'main: { name: "Main", identity: { name: "Boss", emoji: "🦞" } },'
    )
    cli("agents", "unbind", "--agent", "main", "--bind", "telegram")
    assert "// tg" not in cfg.read_text() and "/* routing */" in cfg.read_text()
    cli("agents", "delete", "work", "--force")
    # back to the original, less the telegram binding (and its comment) and plus main's identity
    assert cfg.read_text() == COMMENTED.replace(
        '    { agentId: "main", match: { channel: "telegram" } }, // tg\n', ""
    ).replace('main: { name: "Main" },', 'main: { name: "Main", identity: { name: "Boss", emoji: "🦞" } },')


def test_a_json_file_stays_json_in_its_own_layout(cli: Any, tmp_path: Path) -> None:
    """A file OpenClaw wrote (plain JSON, 2-space indent, `entries` map) stays plain JSON."""
    cfg: Path = cli.cfg
    original = {"agents": {"entries": {"main": {"name": "Main"}}}, "bindings": [], "meta": {"x": 1}}
    cfg.write_text(json.dumps(original, indent=2) + "\n")
    cli(
        "agents", "add", "work", "--workspace", str(tmp_path / "ws"), "--non-interactive", "--bind", "discord"
    )
    text = cfg.read_text()
    data = json.loads(text)  # still JSON
    assert list(data["agents"]["entries"]) == ["main", "work"]
    assert data["bindings"] == [{"agentId": "work", "match": {"channel": "discord"}}]
    assert '\n      "work": {\n        "workspace": ' in text  # the file's own indentation


def test_an_invalid_result_is_refused_and_nothing_is_written(tmp_path: Path) -> None:
    cfg = tmp_path / "openclaw.json"
    cfg.write_text(COMMENTED)
    cfg.chmod(0o640)
    with pytest.raises(ConfigError) as exc:
        update_config_file(
            cfg, lambda d: d.setdefault("session", {}).update(dmScope="bogus"), checks=default_checks()
        )
    assert "dmScope" in str(exc.value.problems)
    assert cfg.read_text() == COMMENTED
    assert not (tmp_path / "openclaw.json.bak").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["openclaw.json"]  # no temporary file left


def test_a_write_keeps_mode_and_backup_and_an_unchanged_result_writes_nothing(tmp_path: Path) -> None:
    cfg = tmp_path / "openclaw.json"
    cfg.write_text(COMMENTED)
    cfg.chmod(0o600)
    update_config_file(cfg, lambda d: None, checks=default_checks())
    assert not (tmp_path / "openclaw.json.bak").exists()
    update_config_file(cfg, lambda d: d["gateway"].update(port=18800), checks=default_checks())
    assert cfg.read_text() == COMMENTED.replace("port: 18789", "port: 18800")
    assert (tmp_path / "openclaw.json.bak").read_text() == COMMENTED
    for f in (cfg, tmp_path / "openclaw.json.bak"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600


# --- $include -------------------------------------------------------------------------------

AGENTS_FILE = """\
// agents live here
{
  entries: {
    main: { name: "Main" }, // the first
  },
}
"""
ROOT_WITH_INCLUDE = """\
// root
{
  agents: { $include: "./agents.json5" },
  bindings: [], // none yet
}
"""


def test_a_change_inside_an_included_section_is_written_into_that_file(cli: Any, tmp_path: Path) -> None:
    cfg: Path = cli.cfg
    cfg.write_text(ROOT_WITH_INCLUDE)
    (tmp_path / "agents.json5").write_text(AGENTS_FILE)
    cli("agents", "add", "work", "--workspace", "~/ws", "--non-interactive")
    assert cfg.read_text() == ROOT_WITH_INCLUDE
    assert _only_inserted(AGENTS_FILE, (tmp_path / "agents.json5").read_text()) == [
        '    work: { workspace: "~/ws" },'
    ]
    assert (tmp_path / "agents.json5.bak").read_text() == AGENTS_FILE
    cli("agents", "bind", "--agent", "work", "--bind", "discord")  # bindings: in the root file
    assert json5.loads(cfg.read_text())["bindings"] == [{"agentId": "work", "match": {"channel": "discord"}}]


def test_an_included_array_gets_the_new_binding(cli: Any, tmp_path: Path) -> None:
    cfg: Path = cli.cfg
    bindings = '// routes\n[\n  { agentId: "main", match: { channel: "telegram" } }, // tg\n]\n'
    (tmp_path / "bindings.json5").write_text(bindings)
    root = '{\n  bindings: { $include: "./bindings.json5" },\n}\n'
    cfg.write_text(root)
    cli("agents", "bind", "--agent", "main", "--bind", "discord")
    assert cfg.read_text() == root
    assert _only_inserted(bindings, (tmp_path / "bindings.json5").read_text()) == [
        '  { agentId: "main", match: { channel: "discord" } },'
    ]


def test_a_change_spanning_files_or_merged_includes_is_refused(cli: Any, tmp_path: Path) -> None:
    cfg: Path = cli.cfg
    (tmp_path / "agents.json5").write_text(AGENTS_FILE)
    cfg.write_text(ROOT_WITH_INCLUDE)
    out = cli("agents", "add", "w", "--non-interactive", "--bind", "discord", ok=False)
    assert "spans several files" in out and "agents.entries" in out and "bindings" in out
    assert cfg.read_text() == ROOT_WITH_INCLUDE
    assert (tmp_path / "agents.json5").read_text() == AGENTS_FILE

    (tmp_path / "more.json5").write_text("{ defaults: { model: 'echo/x' } }")
    merged = ROOT_WITH_INCLUDE.replace('"./agents.json5"', '["./agents.json5", "./more.json5"]')
    cfg.write_text(merged)
    out = cli("agents", "add", "w", "--non-interactive", ok=False)
    assert "agents is merged from $include" in out
    assert cfg.read_text() == merged and (tmp_path / "agents.json5").read_text() == AGENTS_FILE


def test_an_include_outside_the_config_directory_is_read_only(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "agents.json5").write_text(AGENTS_FILE)
    home = tmp_path / "home"
    home.mkdir()
    cfg = home / "openclaw.json"
    cfg.write_text(ROOT_WITH_INCLUDE.replace("./agents.json5", "../shared/agents.json5"))
    monkeypatch.setenv("OPENCLAW_INCLUDE_ROOTS", str(shared))
    result = CliRunner().invoke(app, ["--config", str(cfg), "agents", "add", "w", "--non-interactive"])
    assert isinstance(result.exception, ConfigError)
    assert "outside the config directory" in str(result.exception.problems)
    assert (shared / "agents.json5").read_text() == AGENTS_FILE


# --- any change, any layout: the text parses to exactly the new data --------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.text(max_size=8),
    st.floats(allow_nan=False, width=32),
)
_keys = st.text(alphabet="abcxyz_$-. 1", min_size=1, max_size=6)
_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=20,
)
_documents = st.dictionaries(_keys, _values, max_size=5)


def _styles(data: dict[str, Any]) -> list[str]:
    """The document as JSON, as indented JSON5 with comments after every line (LF and CRLF), and on
    one line."""
    indented = json.dumps(data, indent=2, ensure_ascii=False)
    commented = "// head\n" + "\n".join(
        line + (" // c" if line.rstrip().endswith((",", "{", "[")) else "") for line in indented.split("\n")
    )
    return [indented, commented, commented.replace("\n", "\r\n"), json.dumps(data, ensure_ascii=False)]


@st.composite
def _mutations(draw: st.DrawFn) -> tuple[dict[str, Any], dict[str, Any]]:
    old = draw(_documents)
    new = copy.deepcopy(old)
    containers: list[Any] = [new]
    stack: list[Any] = [new]
    while stack:
        value = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, dict | list):
                containers.append(child)
                stack.append(child)
    for _ in range(draw(st.integers(1, 4))):
        target = draw(st.sampled_from(containers))
        action = draw(st.sampled_from(["add", "remove", "replace"]))
        if isinstance(target, dict):
            keys = list(target)
            if action == "add" or not keys:
                target[draw(_keys)] = draw(_values)
            elif action == "remove":
                del target[draw(st.sampled_from(keys))]
            else:
                target[draw(st.sampled_from(keys))] = draw(_values)
        else:
            if action == "add" or not target:
                target.insert(draw(st.integers(0, len(target))), draw(_values))
            elif action == "remove":
                del target[draw(st.integers(0, len(target) - 1))]
            else:
                target[draw(st.integers(0, len(target) - 1))] = draw(_values)
    return old, new


@settings(max_examples=300, deadline=None)
@given(_mutations())
def test_any_change_in_any_layout_gives_the_new_data(case: tuple[dict[str, Any], dict[str, Any]]) -> None:
    old, new = case
    for text in _styles(old):
        edited = apply_edits(text, diff(old, new))
        assert json5.loads(edited) == new, (text, edited)
        if "\r\n" in text:  # no bare LF added to a CRLF file
            assert edited.count("\n") == edited.count("\r\n"), edited


def test_a_big_file_gets_one_line() -> None:
    """A 5000-agent file: appending an agent adds its line (and the comma before it)."""
    lines = ["{", '  "agents": {', '    "list": [']
    lines += [f'      {{"id": "a{i}", "model": "echo/m{i}"}},' for i in range(5000)]
    lines += ['      {"id": "last"}', "    ]", "  }", "}", ""]
    text = "\n".join(lines)
    data = json.loads(text)
    new = copy.deepcopy(data)
    new["agents"]["list"].append({"id": "new"})
    edited = apply_edits(text, diff(data, new))
    assert _only_inserted(text, edited.replace('{"id": "last"},', '{"id": "last"}')) == [
        '      {"id": "new"}'
    ]
