"""The anchor part of `make bench`: finding OpenClaw, skipping with a reason, reading its figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.bench import anchor


def _install(root: Path) -> None:
    for rel in ("node_modules/.bin/openclaw", "node_modules/node/bin/node"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("")


def test_openclaw_is_found_through_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENCLAW_ORACLE_DIR", str(tmp_path / "oc"))
    monkeypatch.setenv("ANCHOR_BENCH_DIR", str(tmp_path / "scripts"))
    assert (anchor.oracle_dir(), anchor.scripts_dir()) == (tmp_path / "oc", tmp_path / "scripts")
    monkeypatch.delenv("OPENCLAW_ORACLE_DIR")
    assert anchor.oracle_dir() == Path.home() / ".cache" / "openclaw-oracle"


def test_each_missing_piece_is_named(tmp_path: Path) -> None:
    oc, scripts = tmp_path / "oc", tmp_path / "scripts"
    assert "node_modules/.bin/openclaw is missing" in (anchor.why_skipped(oc, scripts) or "")
    _install(oc)
    assert "no gateway-bench.sh" in (anchor.why_skipped(oc, scripts) or "")
    scripts.mkdir()
    (scripts / "gateway-bench.sh").write_text("")
    assert anchor.why_skipped(oc, scripts) is None


def test_without_openclaw_the_part_is_skipped_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OPENCLAW_ORACLE_DIR", str(tmp_path / "none"))
    out = tmp_path / "anchor.json"
    assert anchor.main(["--json", str(out), "--quick", "--no-stages"]) == 0  # others' arguments ignored
    assert "anchor: skipped: OpenClaw is not installed" in capsys.readouterr().out
    assert "OpenClaw is not installed" in json.loads(out.read_text())["skipped"]


def test_openclaw_figures_are_read_from_its_run_directory(tmp_path: Path) -> None:
    loads = [
        {"label": "chat-c1", "ok": 30, "p50_ms": 530.5, "throughput_turns_per_s": 1.9},
        {"label": "chat-c20", "ok": 100, "p50_ms": 9000.0, "throughput_turns_per_s": 1.3},
    ]
    (tmp_path / "load.jsonl").write_text("\n".join(json.dumps(x) for x in loads) + "\n")
    (tmp_path / "summary.txt").write_text(
        "[10:00:00] start[cold-state]: /health 200 after 20.1 s, /readyz 200 after 25.3 s; RSS kB (main tree nproc) at ready: 1 2 3\n"
        "# chat c=1 n=30 err=0 p50=530.5ms p99=700ms thr=1.9/s | gateway CPU 23400 ms, 780 ms/turn\n"
        "# stream c=1 n=30 err=0 p50=540ms p99=700ms thr=1.8/s | gateway CPU 24000 ms, 800 ms/turn\n"
        "# chat c=20 n=100 err=0 p50=9000ms p99=12000ms thr=1.3/s | gateway CPU 90000 ms, 900 ms/turn\n"
        "[10:01:00] RSS kB after chat-c20 (main tree nproc): 1800000 2048000 4\n"
        "[10:02:00] start[warm-state-restart]: /health 200 after 9 s, /readyz 200 after 11.0 s; RSS kB 1 2 3\n"
    )
    assert anchor.parse_run(tmp_path) == {
        "p50_ms_c1": 530.5,
        "turns_per_s_c20": 1.3,
        "cpu_ms_per_turn_c1": 780.0,
        "cpu_ms_per_turn_c20": 900.0,
        "rss_mb": 2000.0,
        "ready_s": 25.3,
    }


def test_our_figures_come_from_the_pipeline_json(tmp_path: Path) -> None:
    run = {
        "error": None,
        "figures": {"p50_ms_c1": 12.0, "turns_per_s_c20": 150.0, "rss_mb": 80.0, "ready_s": 1.2},
        "phases": {"c1": {"cpu_ms_per_turn": {"gateway": 9.0, "nats_server": 1.0}}},
        "peak_rss_mb": {"gateway": 80.0, "nats_server": 20.0},
    }
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps({"runs": {"echo": run, "openai": run}}))
    mine = anchor.ours(path)
    assert mine is not None
    assert (mine["p50_ms_c1"], mine["cpu_ms_per_turn_c1"], mine["rss_mb"], mine["run"]) == (
        12.0,
        10.0,
        100.0,
        1.0,
    )
    assert anchor.ours(tmp_path / "missing.json") is None
