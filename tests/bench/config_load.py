"""Config file loading time by size (`python -m tests.bench.config_load`).

For 1,000 and 10,000 bindings (about 0.1 MB and 1 MB of JSON), measured on the same bytes:

  json.loads   the stdlib's C parser alone: the baseline, the floor of reading the text
  parse        `read_config_file`'s parsing: the stdlib fast path (the text is plain JSON)
  json5 lib    the pure-Python `json5` package on JSON5 text (the 10,000-binding file: a slice,
               scaled): the reference the loader falls back to when its fast paths decline
  parse JSON5  `read_config_file`'s parsing of the same config written as people write JSON5
               (unquoted keys, comments, trailing commas): the rewrite fast path (_json5_fast)
  check        `parse_config` on the parsed data: schema walk, settings, domain checks
  load         `load_config` of the plain-JSON file: read + parse + check, what a reload costs
  load JSON5   `load_config` of the JSON5 file

Each figure is the median of 3 repeats after a warm-up. Goal: a 1 MB config loads in ≤ 1 s.
Two runs on the 2-core development machine (load average 2.5), 10,000 bindings, 1.48 MB:
json.loads 16-27 ms, parse 0.12-0.16 s (the duplicate-key hook is a Python call per object),
json5 (the same size of JSON5 text) 22-25 s, check 0.46-0.60 s, load 0.66-0.94 s. Under a
load average of 5 the load took 1.6 s. JSON5 syntax read at json5's pace (~25 s per MB) until the
rewrite fast path; the figures for it are in its commit message.

    python -m tests.bench.config_load [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import json5

from clawmesh.checks import default_checks
from clawmesh.config import load_config, parse_config
from clawmesh.config._load import _pairs, _parse_json5
from tests.bench._common import machine, median, print_table, write_json
from tests.bench.routing import _mixed_bindings, config_dict

SIZES = (1_000, 10_000)
REPEATS = 3
JSON5_SAMPLE = 100_000  # characters of JSON5 text json5 reads per timing (it reads ~50-80 KB/s)


def _time(fn: Callable[[], Any]) -> float:
    fn()
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - start)
    return median(runs)


def _json5_sample(n: int) -> str:
    """A JSON5 file (comment in front) of about JSON5_SAMPLE characters: n bindings' worth, cut."""
    bindings = _mixed_bindings(n)
    while len(json.dumps(config_dict(bindings), indent=2)) > JSON5_SAMPLE and len(bindings) > 1:
        bindings = bindings[: len(bindings) * 3 // 4]
    return "// sample\n" + json.dumps(config_dict(bindings), indent=2)


_KEY = re.compile(r'"([A-Za-z_$][A-Za-z0-9_$]*)":')


def _hand_written(text: str) -> str:
    """The JSON `text` as people write JSON5: unquoted keys, a comment every 20 lines, trailing
    commas after the last item of each object."""
    lines = _KEY.sub(r"\1:", text).split("\n")
    out = ["// clawmesh config (JSON5)"]
    for i, line in enumerate(lines):
        if i % 20 == 0:
            out.append("  // section " + str(i))
        stripped = line.strip()
        nxt = lines[i + 1].strip() if i + 1 < len(lines) else ""
        if stripped and not stripped.endswith((",", "{", "[")) and nxt.startswith("}"):
            line += ","
        out.append(line)
    return "\n".join(out)


def _measure(n: int, tmp: str) -> dict[str, Any]:
    checks = default_checks()
    text = json.dumps(config_dict(_mixed_bindings(n)), indent=2)
    path = Path(tmp) / f"c{n}.json"
    path.write_text(text)
    env = {"HOME": tmp}
    data = _parse_json5(text, path)
    sample = _json5_sample(n)
    hand = _hand_written(text)
    path5 = Path(tmp) / f"c{n}.json5"
    path5.write_text(hand)
    assert _parse_json5(hand, path5) == data  # the same config
    return {
        "bindings": n,
        "bytes": len(text.encode()),
        "json_loads_s": _time(lambda: json.loads(text)),
        "parse_s": _time(lambda: _parse_json5(text, path)),
        "json5_s": _time(lambda: json5.loads(sample, object_pairs_hook=_pairs)) * len(text) / len(sample),
        "json5_bytes": len(hand.encode()),
        "parse_json5_s": _time(lambda: _parse_json5(hand, path5)),
        "check_s": _time(lambda: parse_config(data, checks=checks, env=env, source=path)),
        "load_s": _time(lambda: load_config(path, checks=checks, env=env)),
        "load_json5_s": _time(lambda: load_config(path5, checks=checks, env=env)),
    }


def run() -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        return [_measure(n, tmp) for n in SIZES]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", help="write the results to this file")
    # `make bench ARGS=--quick` passes it to every benchmark; this one is quick already (~1 min).
    parser.add_argument("--quick", action="store_true", help="accepted; the sizes stay the same")
    args = parser.parse_args()
    results = run()
    rows = [
        [
            f"{r['bindings']:,}",
            f"{r['bytes'] / 1e6:.2f} MB",
            f"{r['json_loads_s'] * 1e3:.0f} ms",
            f"{r['parse_s'] * 1e3:.0f} ms",
            f"{r['json5_s']:.1f} s",
            f"{r['parse_json5_s'] * 1e3:.0f} ms",
            f"{r['check_s'] * 1e3:.0f} ms",
            f"{r['load_s'] * 1e3:.0f} ms" + (" !" if r["load_s"] > 1.0 else ""),
            f"{r['load_json5_s'] * 1e3:.0f} ms" + (" !" if r["load_json5_s"] > 1.0 else ""),
        ]
        for r in results
    ]
    print_table(
        [
            "bindings",
            "size",
            "json.loads",
            "parse",
            "json5 lib",
            "parse JSON5",
            "check",
            "load",
            "load JSON5",
        ],
        rows,
        title="config load (goal: 1 MB in ≤ 1 s; `!` above it)",
    )
    if args.json:
        write_json(args.json, {"machine": machine(), "results": results})


if __name__ == "__main__":
    main()
