"""Start-up time of the `clawmesh` command (`python -m tests.bench.cli_startup`).

Each command is run as a new process, N times, and its median wall time is printed beside the
same run's bare interpreter start-up (`python -c pass` with the same venv), the floor no Python
command can go below. Goals (issue 11, informational): `--version` ≤ 5x bare Python, `route` ≤ 10x.

    python -m tests.bench.cli_startup [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench._common import machine, median, print_table, write_json

_CLAWMESH = str(Path(sys.executable).with_name("clawmesh"))
_COMMANDS: dict[str, tuple[list[str], float | None]] = {
    "bare python": ([sys.executable, "-c", "pass"], None),
    "clawmesh --version": ([_CLAWMESH, "--version"], 5.0),
    "clawmesh route": ([_CLAWMESH, "route", "--channel", "api", "--peer", "direct:alice"], 10.0),
    "clawmesh --help": ([_CLAWMESH, "--help"], None),
}


def _time(cmd: list[str], runs: int, env: dict[str, str]) -> float:
    walls = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, env=env, check=False)
        walls.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode()[-500:]}")
    return median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--quick", action="store_true", help="5 runs per command instead of 15")
    args = parser.parse_args()
    runs = 5 if args.quick else 15
    with tempfile.TemporaryDirectory() as home:
        # no config and an empty state dir: the built-in defaults, as on a new machine
        env = {"PATH": "/usr/bin:/bin", "HOME": home, "CLAWMESH_STATE_DIR": f"{home}/state"}
        results = {name: _time(cmd, runs, env) for name, (cmd, _) in _COMMANDS.items()}
    bare = results["bare python"]
    rows = []
    for name, (_, goal) in _COMMANDS.items():
        ratio = results[name] / bare
        verdict = "" if goal is None else ("PASS" if ratio <= goal else "MISS") + f" (≤ {goal:g}x)"
        rows.append([name, f"{results[name] * 1e3:.0f} ms", f"{ratio:.1f}x", verdict])
    print_table(["command", f"median of {runs}", "÷ bare python", "goal"], rows, title="CLI start-up")
    if args.json:
        data: dict[str, Any] = {"benchmark": "cli_startup", "machine": machine(), "runs": runs}
        data["seconds"] = results
        write_json(args.json, data)


if __name__ == "__main__":
    main()
