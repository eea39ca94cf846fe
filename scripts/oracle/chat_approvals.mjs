// Runs OpenClaw's own `/approve` parser and exec-approval prompt builder on the cases in the
// file named by argv[2] and prints {version, parsed, prompts} (see scripts/oracle/chat_approvals.py).
// `parseApproveCommand` is not exported by its chunk: its source (the regexes, the alias table
// and the function) is read from the chunk and evaluated with the two helpers it calls.
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.OPENCLAW_ORACLE_DIR;
if (!root) throw new Error("OPENCLAW_ORACLE_DIR is not set");
const dist = path.join(root, "node_modules", "openclaw", "dist");
const version = JSON.parse(readFileSync(path.join(dist, "..", "package.json"), "utf8")).version;
const files = readdirSync(dist).filter((f) => f.endsWith(".mjs")).sort();

function chunkWith(marker) {
  for (const file of files) {
    const text = readFileSync(path.join(dist, file), "utf8");
    if (text.includes(marker)) return { file, text };
  }
  throw new Error(`no dist chunk contains ${marker}`);
}

async function exported(name, marker) {
  const { file, text } = chunkWith(marker);
  const list = text.match(/export \{([^}]*)\};?\s*$/);
  for (const item of list[1].split(",")) {
    const [local, alias] = item.trim().split(/\s+as\s+/);
    if (local === name) return (await import(pathToFileURL(path.join(dist, file)).href))[alias ?? local];
  }
  throw new Error(`${file} does not export ${name}`);
}

const approve = chunkWith("//#region src/auto-reply/reply/commands-approve.ts").text;
const start = approve.indexOf("const COMMAND_REGEX");
const end = approve.indexOf("function buildResolvedByLabel");
const parseApproveCommand = new Function(
  "normalizeLowercaseStringOrEmpty",
  "expectDefined",
  `${approve.slice(start, end)}\nreturn parseApproveCommand;`,
)((v) => String(v ?? "").toLowerCase(), (v) => v);
const buildPrompt = await exported(
  "buildExecApprovalPendingReplyPayload",
  "function buildExecApprovalPendingReplyPayload(",
);

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const parsed = cases.commands.map((text) => parseApproveCommand(text));
const prompts = cases.prompts.map((p) =>
  buildPrompt({
    approvalId: p.approvalId,
    approvalSlug: p.approvalId,
    command: p.command,
    host: p.host,
    nodeId: p.node ?? undefined,
    cwd: p.cwd ?? undefined,
    expiresAtMs: p.expiresAt * 1000,
    nowMs: p.now * 1000,
    ask: p.allowAlways ? "on-miss" : "always",
  }).text,
);
process.stdout.write(JSON.stringify({ version, parsed, prompts }));
