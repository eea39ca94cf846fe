"""clawmesh's config-writing commands beside what OpenClaw 2026.9.6 wrote for the same steps on
the same commented file (tests/fixtures/oracle/config_writes.json, `make oracle-fixtures`).

Same: where things land (the new agent in `agents.entries`, the file's map form; bindings
appended in order; the identity on the entry; unbind removes the binding). Different, on
purpose: OpenClaw rewrites the file as JSON and strips the comments (it warns on stderr);
clawmesh keeps every comment and writes only what the command asked for (OpenClaw also adds
defaults such as `agentDir`, `identity`, `talk`, `meta` and `type: "route"`).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import json5
import pytest
from typer.testing import CliRunner

from clawmesh.cli import app

FIXTURE = json.loads((Path(__file__).parents[1] / "fixtures" / "oracle" / "config_writes.json").read_text())
COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)


def _bindings(data: dict[str, Any]) -> list[tuple[str, Any]]:
    return [(b["agentId"], b["match"]) for b in data.get("bindings", [])]


def test_clawmesh_puts_things_where_openclaw_does_and_keeps_the_comments(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLAWMESH_STATE_DIR", str(tmp_path / ".openclaw"))
    config = tmp_path / "openclaw.json"
    config.write_text(FIXTURE["initial"])
    comments = COMMENTS.findall(FIXTURE["initial"])
    assert len(comments) == 5
    for n, step in enumerate(FIXTURE["steps"]):
        assert step["exitCode"] == 0
        args = [a.replace("HOME", str(tmp_path)) for a in step["args"]]
        result = CliRunner().invoke(app, ["--config", str(config), *args])
        assert result.exit_code == 0, result.output
        ours_text = config.read_text()
        ours = json5.loads(ours_text.replace(str(tmp_path), "HOME"))
        theirs = json.loads(step["after"])
        assert list(ours["agents"]["entries"]) == list(theirs["agents"]["entries"])
        assert (
            ours["agents"]["entries"].get("work", {}).get("workspace")
            == theirs["agents"]["entries"]["work"]["workspace"]
        )
        assert _bindings(ours) == _bindings(theirs)
        if n >= 2:  # set-identity
            assert ours["agents"]["entries"]["work"]["identity"]["name"] == "Worker"
            assert theirs["agents"]["entries"]["work"]["identity"]["name"] == "Worker"
        # OpenClaw's file has no comment left; ours has every one (but the removed binding's)
        assert COMMENTS.findall(step["after"]) == []
        gone = {"// tg"} if step["args"][:2] == ["agents", "unbind"] else set()
        assert COMMENTS.findall(ours_text) == [c for c in comments if c not in gone]
    assert "strip JSON5 comments" in FIXTURE["steps"][0]["stderr"]
