"""`POST /tools/invoke` and the hook endpoints answer as the real OpenClaw 2026.9.6 gateway did.

tests/fixtures/oracle/http_hooks.json holds OpenClaw's answers to ~85 requests, good and bad
(scripts/oracle/http_hooks.py records them from `openclaw gateway run`); here clawmesh (ingress,
router, runner on a real nats-server) gets the same configs and the same requests, in the same
order, and must give the same answers. `compare` says how: `exact` (status and JSON body, with
generated run ids replaced), `text` (OpenClaw answered plain text; clawmesh answers the same words
as `{"ok": false, "error": …}`), `status` (the message is JavaScript's own, e.g. a JSON.parse
error). No node is needed."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fixtures.gateway import run_gateway

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "oracle" / "http_hooks.json"
ORACLE = json.loads(FIXTURE.read_text())


def _config(name: str, tmp_path: Path) -> dict[str, Any]:
    text = json.dumps(ORACLE["configs"][name]).replace(ORACLE["workspace"], str(tmp_path / "ws"))
    for agent in ("main", "work", "other"):
        (tmp_path / "ws" / agent).mkdir(parents=True, exist_ok=True)
    (tmp_path / "ws" / "main" / "note.txt").write_text(ORACLE["note"])
    config: dict[str, Any] = json.loads(text)
    return config


def _normalise(value: Any) -> Any:
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "runId" and isinstance(item, str):
                out[key] = "<id>"
            elif key == "runIds" and isinstance(item, list):
                out[key] = ["<id>"] * len(item)
            else:
                out[key] = _normalise(item)
        return out
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return value


def _same_words(got: Any, text: str) -> bool:
    """`{"ok": false, "error": text}` (hooks), or `{"ok": false, "error": {"message": text, …}}` (/tools/invoke)."""
    if not isinstance(got, dict) or got.get("ok") is not False:
        return False
    error = got.get("error")
    return error == text or (isinstance(error, dict) and error.get("message") == text)


def _check(case: dict[str, Any], resp: httpx.Response) -> list[str]:
    want = case["response"]
    problems = []
    if resp.status_code != want["status"]:
        problems.append(f"status {resp.status_code}, OpenClaw {want['status']}: {resp.text[:300]}")
        return problems
    if "allow" in want and resp.headers.get("allow") != want["allow"]:
        problems.append(f"Allow {resp.headers.get('allow')!r}, OpenClaw {want['allow']!r}")
    if "retry-after" in want and not resp.headers.get("retry-after"):
        problems.append("no Retry-After")
    if want["status"] == 204:
        if resp.content:
            problems.append(f"a body with 204: {resp.text[:200]}")
        return problems
    try:
        got = _normalise(resp.json())
    except ValueError:
        return [f"not JSON: {resp.text[:200]}"]
    mode = case["compare"]
    if mode == "exact" and got != want["json"]:
        problems.append(f"body {got}, OpenClaw {want['json']}")
    elif mode == "text" and not _same_words(got, want["text"]):
        problems.append(f"body {got}, OpenClaw text {want['text']!r}")
    elif mode == "status" and set(got) != set(want["json"]):
        problems.append(f"body keys {sorted(got)}, OpenClaw {sorted(want['json'])}")
    return problems


async def _replay(client: httpx.AsyncClient, case: dict[str, Any]) -> httpx.Response:
    if case["name"] == "hooks: 21st failed authentication":
        for _ in range(20):  # the oracle sent 20 failures first
            await client.post(case["path"], content=case["body"].encode(), headers=case["headers"])
    return await client.request(
        case["method"],
        case["path"],
        content=case["body"].encode(),
        headers={"Content-Type": "application/json", **case["headers"]},
    )


@pytest.mark.parametrize("config_name", ["a", "b"])
async def test_answers_match_openclaw(nats_url: str, tmp_path: Path, config_name: str) -> None:
    failures = []
    async with (
        run_gateway(nats_url, _config(config_name, tmp_path), tmp_path) as gw,
        httpx.AsyncClient(base_url=gw.url, timeout=30) as client,
    ):
        for case in ORACLE["cases"][config_name]:
            resp = await _replay(client, case)
            failures += [f"{case['name']}: {p}" for p in _check(case, resp)]
    assert not failures, "\n".join(failures)
