// Runs OpenClaw's own POSIX allowlist evaluation (evaluateShellAllowlistWithAuthorization, with
// its default safe bins) on the cases in the file named by argv[2] (JSON: {cases: [{command,
// allowlist: [pattern…]}]}) and prints {version, results: [{analysisOk, allowlistSatisfied}]}.
// Driven by scripts/oracle/exec_allowlist.py; OPENCLAW_ORACLE_DIR names the npm install.
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.OPENCLAW_ORACLE_DIR;
if (!root) throw new Error("OPENCLAW_ORACLE_DIR is not set");
const dist = path.join(root, "node_modules", "openclaw", "dist");
const version = JSON.parse(readFileSync(path.join(dist, "..", "package.json"), "utf8")).version;

async function chunkExport(name) {
  const defines = new RegExp(`\\bfunction ${name}\\(`);
  for (const file of readdirSync(dist).filter((f) => f.endsWith(".mjs")).sort()) {
    const text = readFileSync(path.join(dist, file), "utf8");
    if (!defines.test(text)) continue;
    const list = text.match(/export \{([^}]*)\};?\s*$/);
    if (!list) continue;
    for (const item of list[1].split(",")) {
      const [local, alias] = item.trim().split(/\s+as\s+/);
      if (local === name) return (await import(pathToFileURL(path.join(dist, file)).href))[alias ?? local];
    }
  }
  throw new Error(`no dist chunk exports ${name}`);
}

const evaluate = await chunkExport("evaluateShellAllowlistWithAuthorization");
const resolveSafeBins = await chunkExport("resolveSafeBins");
const input = JSON.parse(readFileSync(process.argv[2], "utf8"));
const results = [];
for (const c of input.cases) {
  const r = await evaluate({
    command: c.command,
    allowlist: c.allowlist.map((pattern) => ({ pattern })),
    safeBins: resolveSafeBins(undefined),
    cwd: input.cwd,
    env: { PATH: input.path, HOME: input.cwd },
    platform: "linux",
  });
  results.push({ analysisOk: r.analysisOk, allowlistSatisfied: r.allowlistSatisfied });
}
console.log(JSON.stringify({ version, results }));
