// Runs OpenClaw's own session-key, id and routing functions on the cases in the file named by argv[2]
// (JSON: {cases: [[fn, input], …], routes: [{config, inputs: […]}, …]}) and prints the outputs
// in the same order (JSON: {version, cases: [output, …], routes: [[output, …], …]}).
// Driven by scripts/oracle/session_keys.py; OPENCLAW_ORACLE_DIR names the npm install.
import { createRequire } from "node:module";
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.OPENCLAW_ORACLE_DIR;
if (!root) throw new Error("OPENCLAW_ORACLE_DIR is not set");
const require = createRequire(path.join(root, "package.json"));
const routingEntry = require.resolve("openclaw/plugin-sdk/routing");
const sdk = await import(pathToFileURL(routingEntry).href);
const dist = path.dirname(path.dirname(routingEntry));
const version = JSON.parse(readFileSync(path.join(dist, "..", "package.json"), "utf8")).version;

// Helpers the SDK entry does not re-export live in bundled chunks: find the chunk that defines
// the function and read the alias its trailing `export { … }` gives it.
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

const fromSdk = [
  "normalizeAgentId", "normalizeAccountId", "normalizeOptionalAccountId", "normalizeMainKey",
  "parseAgentSessionKey", "isSubagentSessionKey", "isCronSessionKey", "resolveThreadSessionKeys",
  "buildAgentSessionKey", "buildAgentMainSessionKey", "buildGroupHistoryKey", "resolveAgentRoute",
];
const fromChunks = [
  "classifySessionKeyShape", "deriveSessionChatTypeFromKey", "getSubagentDepth", "isValidAgentId",
  "toAgentStoreSessionKey",
];
const fns = {};
for (const name of fromSdk) {
  if (typeof sdk[name] !== "function") throw new Error(`openclaw/plugin-sdk/routing has no ${name}`);
  fns[name] = sdk[name];
}
for (const name of fromChunks) fns[name] = await chunkExport(name);

function run(thunk) {
  try {
    return thunk();
  } catch (error) {
    return { error: error?.code ?? error?.name ?? "Error" };
  }
}

const request = JSON.parse(readFileSync(process.argv[2], "utf8"));
const cases = request.cases.map(([fn, input]) => run(() => fns[fn](input)));
const routes = request.routes.map(({ config, inputs }) =>
  inputs.map((input) => run(() => fns.resolveAgentRoute({ ...input, cfg: config }))),
);
process.stdout.write(JSON.stringify({ version, cases, routes }, (_k, v) => (v === undefined ? null : v)));
