"""Every config OpenClaw 2026.9.6 accepts loads in clawmesh (warnings allowed, no errors).

The corpus is the JSON5 examples of OpenClaw's own docs that its `config validate` accepts,
written by scripts/oracle/doc_configs.py (`make openclaw-configs`); no Node is needed here.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from clawmesh.checks import default_checks
from clawmesh.config import ConfigError, parse_config_text

_CORPUS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "fixtures" / "openclaw_configs.json").read_text(
        encoding="utf-8"
    )
)
_ACCEPTED: list[dict[str, str]] = _CORPUS["accepted"]


def test_the_corpus_is_the_oracles() -> None:
    assert _CORPUS["openclaw"] == "2026.9.6"
    assert len(_ACCEPTED) > 1000


@pytest.mark.parametrize("example", _ACCEPTED, ids=[e["source"] for e in _ACCEPTED])
def test_a_config_openclaw_accepts_loads(example: dict[str, str], tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path), "CLAWMESH_STATE_DIR": str(tmp_path / "state")}
    try:
        parse_config_text(
            example["text"], checks=default_checks(), env=env, source=tmp_path / "openclaw.json"
        )
    except ConfigError as exc:
        pytest.fail(f"{example['source']}: {exc}")
