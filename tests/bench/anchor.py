"""OpenClaw measured side by side (`python -m tests.bench.anchor`): the anchor part of `make bench`.

When OpenClaw is installed as in `../shared/reference/openclaw-oracle.md`, this runs the
anchor bench scripts (`../shared/reference/anchor-bench/gateway-bench.sh`, HTTP phases only)
right after our pipeline run, on the same fake model as our pipeline (`tests.fakes.models`,
same reply; `--fake anchor` keeps the anchor's own `fake_openai.py`), and prints each of
our figures as a ratio to OpenClaw's: latency at c=1 (p50), throughput at c=20, gateway CPU per
turn, RSS and ready time. Ours are read from the pipeline's JSON (`--pipeline`, default
`.ci-logs/bench/pipeline.json`, its `openai` run: the provider path against a fake model).

Nothing is downloaded. Where things are looked for:

  OPENCLAW_ORACLE_DIR   the OpenClaw install (default ~/.cache/openclaw-oracle): needs
                        node_modules/.bin/openclaw and node_modules/node/bin/node
  ANCHOR_BENCH_DIR      the anchor scripts (default ../shared/reference/anchor-bench beside the
                        main checkout, also when run from a git worktree)

Without either (or without our pipeline figures), it prints that it skipped and why, and exits 0.

    python -m tests.bench.anchor [--quick] [--json PATH] [--pipeline PATH] [--fake ours|anchor]

The scripts are copied to the run directory (never changed where they are); with `--fake ours`
the copy's `fake_openai.py` is a shim that starts our fake model on the port it is given.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.bench._common import print_table, write_json
from tests.bench.pipeline import FAKE_REPLY

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PIPELINE_JSON = ROOT / ".ci-logs" / "bench" / "pipeline.json"


def oracle_dir() -> Path:
    return Path(
        os.environ.get("OPENCLAW_ORACLE_DIR") or Path.home() / ".cache" / "openclaw-oracle"
    ).expanduser()


def _main_checkout() -> Path:
    """The repository's main checkout, also when this runs in a `git worktree` of it."""
    dotgit = ROOT / ".git"
    if dotgit.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>"
        text = dotgit.read_text().strip()
        if text.startswith("gitdir:"):
            return Path(text.removeprefix("gitdir:").strip()).parents[2]
    return ROOT


def scripts_dir() -> Path:
    default = _main_checkout().parent / "shared" / "reference" / "anchor-bench"
    return Path(os.environ.get("ANCHOR_BENCH_DIR") or default).expanduser()


def why_skipped(oracle: Path, scripts: Path) -> str | None:
    """Why the anchor cannot run here, or None when it can."""
    for need in (
        oracle / "node_modules" / ".bin" / "openclaw",
        oracle / "node_modules" / "node" / "bin" / "node",
    ):
        if not need.exists():
            return f"OpenClaw is not installed: {need} is missing (OPENCLAW_ORACLE_DIR={oracle})"
    if not (scripts / "gateway-bench.sh").is_file():
        return f"the anchor bench scripts are missing: no gateway-bench.sh in {scripts} (ANCHOR_BENCH_DIR)"
    return None


_SHIM = """#!/usr/bin/env python3
# Written by tests/bench/anchor.py: stands in for the anchor's fake_openai.py and starts
# clawmesh's fake model server (the one the pipeline benchmark uses) on the port asked for.
import argparse, os
ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, default=18900)
ap.add_argument("--log-dir")
args, _ = ap.parse_known_args()
os.chdir({root!r})
os.execv({python!r}, [{python!r}, "-m", "tests.fakes.models", "--port", str(args.port), "--reply", {reply!r}])
"""


def prepare_scripts(scripts: Path, run: Path, fake: str) -> Path:
    """A copy of the anchor scripts in `run`, with our fake model behind `fake_openai.py` if asked."""
    copy = run / "anchor-bench"
    shutil.copytree(scripts, copy)
    if fake == "ours":
        shim = _SHIM.format(root=str(ROOT), python=sys.executable, reply=FAKE_REPLY)
        (copy / "fake_openai.py").write_text(shim)
    return copy


def parse_run(run: Path) -> dict[str, float]:
    """OpenClaw's figures from a gateway-bench.sh run directory (load.jsonl, summary.txt)."""
    loads = {}
    for line in (run / "load.jsonl").read_text().splitlines():
        if line.strip():
            entry = json.loads(line)
            loads[entry.get("label")] = entry
    summary = (run / "summary.txt").read_text()
    out: dict[str, float] = {}
    c1, c20 = loads.get("chat-c1"), loads.get("chat-c20")
    if c1:
        out["p50_ms_c1"] = float(c1["p50_ms"])
    if c20:
        out["turns_per_s_c20"] = float(c20["throughput_turns_per_s"])
    # "... | gateway CPU 12345 ms, 780 ms/turn" after each load line, in phase order.
    cpu = re.findall(r"# chat c=(\d+) n=(\d+).*\| gateway CPU (\d+) ms", summary)
    for conc, n, ms in cpu:
        if int(n):
            out[f"cpu_ms_per_turn_c{conc}"] = int(ms) / int(n)
    rss = re.search(r"RSS kB after chat-c20 \(main tree nproc\): (\d+) (\d+)", summary)
    if rss:
        out["rss_mb"] = int(rss.group(2)) / 1024  # the whole process tree, as ours counts gateway + children
    ready = re.search(r"start\[cold-state\]: .*?/readyz 200 after ([0-9.]+) s", summary)
    if ready:
        out["ready_s"] = float(ready.group(1))
    return out


def ours(pipeline_json: Path) -> dict[str, float] | None:
    try:
        data = json.loads(pipeline_json.read_text())
    except (OSError, ValueError):
        return None
    run = data.get("runs", {}).get("openai") or data.get("runs", {}).get("echo")
    if not run or run.get("error"):
        return None
    figures = run.get("figures", {})
    phases = run.get("phases", {})
    out = {k: float(v) for k, v in figures.items() if isinstance(v, int | float)}
    for conc in ("1", "20"):
        cpu = phases.get(f"c{conc}", {}).get("cpu_ms_per_turn", {})
        if "gateway" in cpu:
            # The gateway process and its nats-server: OpenClaw's figure is its whole process tree.
            out[f"cpu_ms_per_turn_c{conc}"] = float(cpu["gateway"]) + float(cpu.get("nats_server", 0.0))
    out["rss_mb"] = float(run.get("peak_rss_mb", {}).get("gateway", float("nan"))) + float(
        run.get("peak_rss_mb", {}).get("nats_server", 0.0)
    )
    out["run"] = 1.0 if data.get("runs", {}).get("openai") else 0.0
    return out


ROWS = (
    ("p50_ms_c1", "latency p50, c=1 (ms)", "OpenClaw ÷ clawmesh", True),
    ("turns_per_s_c20", "throughput, c=20 (turns/s)", "clawmesh ÷ OpenClaw", False),
    ("cpu_ms_per_turn_c1", "CPU per turn, c=1 (ms)", "OpenClaw ÷ clawmesh", True),
    ("cpu_ms_per_turn_c20", "CPU per turn, c=20 (ms)", "OpenClaw ÷ clawmesh", True),
    ("rss_mb", "RSS (MB)", "OpenClaw ÷ clawmesh", True),
    ("ready_s", "spawn → ready (s)", "OpenClaw ÷ clawmesh", True),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer OpenClaw turns (noisy)")
    parser.add_argument("--json", metavar="PATH", help="write the figures to PATH")
    parser.add_argument("--pipeline", type=Path, default=DEFAULT_PIPELINE_JSON, help="our pipeline JSON")
    parser.add_argument("--keep", action="store_true", help="keep OpenClaw's run directory")
    parser.add_argument(
        "--fake",
        choices=["ours", "anchor"],
        default="ours",
        help="the fake model OpenClaw calls: ours (tests.fakes.models, as in the pipeline run) or the anchor's",
    )
    # `make bench ARGS=…` passes the same arguments to every benchmark: ignore the others'.
    args, _ = parser.parse_known_args(argv)
    oracle, scripts = oracle_dir(), scripts_dir()

    def skip(reason: str) -> int:
        print(f"anchor: skipped: {reason}")
        if args.json:
            write_json(args.json, {"benchmark": "anchor", "skipped": reason})
        return 0

    reason = why_skipped(oracle, scripts)
    if reason:
        return skip(reason)
    mine = ours(args.pipeline)
    if mine is None:
        return skip(
            f"no pipeline figures to compare in {args.pipeline} (run `make bench ARGS=pipeline` first)"
        )
    run = Path(tempfile.mkdtemp(prefix="cm-anchor-"))
    env = {
        **os.environ,
        "OC_DIR": str(oracle),
        "PHASES": "http",
        "TURNS1": "10" if args.quick else "30",
        "TURNS20": "3" if args.quick else "5",
    }
    print(
        f"anchor: OpenClaw from {oracle}, scripts from {scripts}, {args.fake} fake model, run dir {run}",
        flush=True,
    )
    copy = prepare_scripts(scripts, run, args.fake)
    proc = subprocess.run(["bash", str(copy / "gateway-bench.sh"), str(run / "oc")], env=env, check=False)
    try:
        theirs = parse_run(run / "oc")
    except (OSError, ValueError) as exc:
        print(f"anchor: FAILED: OpenClaw's run left no figures ({exc}); exit {proc.returncode}; see {run}")
        return 1
    rows = []
    for key, label, how, lower_is_better in ROWS:
        a, b = mine.get(key, float("nan")), theirs.get(key, float("nan"))
        ratio = (b / a if lower_is_better else a / b) if a and b else float("nan")
        rows.append([label, f"{a:,.2f}", f"{b:,.2f}", f"{ratio:,.1f}x", how])
    source = "openai run (fake model)" if mine.get("run") else "echo run (no openai run in the JSON)"
    print_table(
        ["figure", "clawmesh", "OpenClaw", "ratio", "ratio is"],
        rows,
        title=f"clawmesh ({source}, {args.pipeline.name}) vs OpenClaw 2026.9.6 (anchor-bench, HTTP "
        f"/v1/chat/completions, {'the same' if args.fake == 'ours' else 'its own'} zero-latency fake model), "
        "same machine, one after the other; "
        "ratios > 1 mean clawmesh is better. CPU and RSS: the whole process tree on both sides",
    )
    if args.json:
        write_json(
            args.json, {"benchmark": "anchor", "clawmesh": mine, "openclaw": theirs, "run_dir": str(run)}
        )
    if not args.keep:
        shutil.rmtree(run, ignore_errors=True)
    return 0 if theirs else 1


if __name__ == "__main__":
    sys.exit(main())
