"""Write tests/fixtures/openclaw_configs.json: the JSON5 configs of OpenClaw's own docs that
OpenClaw's `config validate` accepts (tests/unit/test_openclaw_configs.py loads each in clawmesh).

Run with `make openclaw-configs` (needs the OpenClaw oracle, docs/openclaw-oracle.md).
A doc code block counts as a config when it is JSON5 whose top-level keys are all top-level keys
of OpenClaw's schema. Each is validated the way `openclaw config validate --json` does it (the
same read-and-validate functions, run in one Node process: the CLI takes ~14 s per file), with an
empty environment, so a `${VAR}` stays unset as it would on a fresh machine.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

import json5
from _run import ORACLE_VERSION, oracle_dir, run_node

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "openclaw_configs.json"
TOP_KEYS = set(
    json.loads((ROOT / "libs" / "clawmesh" / "config" / "openclaw_keys.json").read_text(encoding="utf-8"))[
        "keys"
    ]
)
_FENCE = re.compile(r"^([ \t]*)```(json5|json)[^\n]*\n(.*?)^\1```", re.M | re.S)

# What `openclaw config validate` runs (dist/config-cli-*.mjs, runConfigValidate), per file.
_DRIVER = r"""
import fs from "node:fs"; import path from "node:path";
const dist = process.env.OC_DIST;
const [,, inFile, outFile, work] = process.argv;
const { createConfigIO } = await import(path.join(dist, "config/config.js"));
const { finishConfigValidationForCli } = await import(path.join(dist, "config-cli-validation-CsBbEalR.mjs"));
const { i: normalizeConfigIssues } = await import(path.join(dist, "issue-format-BQNShMey.mjs"));
const items = JSON.parse(fs.readFileSync(inFile, "utf8"));
const results = [];
for (let i = 0; i < items.length; i++) {
  const dir = path.join(work, String(i)); fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, "openclaw.json"); fs.writeFileSync(file, items[i].text);
  try {
    const env = { HOME: process.env.HOME, OPENCLAW_STATE_DIR: process.env.OPENCLAW_STATE_DIR, OPENCLAW_CONFIG_PATH: file };
    const io = createConfigIO({ configPath: file, observe: false, env });
    const snap = await finishConfigValidationForCli(await io.readConfigFileSnapshotWithPluginMetadata({ prepareValidation: "strict" }));
    results.push({ valid: !!snap.valid, issues: normalizeConfigIssues(snap.valid ? [] : snap.issues) });
  } catch (e) { results.push({ valid: false, issues: [{ path: "", message: String(e && e.message || e) }] }); }
}
fs.writeFileSync(outFile, JSON.stringify(results));
"""


def doc_configs(docs: Path) -> list[dict[str, str]]:
    found = []
    for md in sorted(docs.rglob("*.md")):
        text = md.read_text(encoding="utf-8")
        for m in _FENCE.finditer(text):
            indent = m.group(1)
            body = "\n".join(line.removeprefix(indent) for line in m.group(3).split("\n"))
            try:
                data: Any = json5.loads(body)
            except ValueError:
                continue
            if isinstance(data, dict) and data and set(data) <= TOP_KEYS | {"$include"}:
                line = text.count("\n", 0, m.start()) + 1
                found.append({"source": f"{md.relative_to(docs)}:{line}", "text": body})
    return found


def main() -> None:
    configs = doc_configs(oracle_dir() / "node_modules" / "openclaw" / "docs")
    with tempfile.TemporaryDirectory(prefix="openclaw-configs-") as tmp:
        home = Path(tmp)
        (home / "in.json").write_text(json.dumps(configs), encoding="utf-8")
        run_node(_DRIVER, str(home / "in.json"), str(home / "out.json"), str(home / "work"), home=home)
        results = json.loads((home / "out.json").read_text(encoding="utf-8"))
    accepted = [c for c, r in zip(configs, results, strict=True) if r["valid"]]
    OUT.write_text(
        json.dumps(
            {"openclaw": ORACLE_VERSION, "checked": len(configs), "accepted": accepted},
            indent=1,
            ensure_ascii=False,
        )
        + "\n",
        encoding="utf-8",
    )
    print(f"{len(accepted)} of {len(configs)} doc configs accepted -> {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
