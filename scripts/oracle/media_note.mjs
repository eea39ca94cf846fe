// Runs OpenClaw's own staged-input file naming (`stagedInputFileName`, media/staged-inputs.ts)
// and inbound media note (`buildInboundMediaNoteProjection`, auto-reply/media-note.ts) on the
// cases in the file named by argv[2] and prints {version, names, notes}
// (see scripts/oracle/media_note.py).
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.OPENCLAW_ORACLE_DIR;
if (!root) throw new Error("OPENCLAW_ORACLE_DIR is not set");
const dist = path.join(root, "node_modules", "openclaw", "dist");
const version = JSON.parse(readFileSync(path.join(dist, "..", "package.json"), "utf8")).version;
const files = readdirSync(dist).filter((f) => f.endsWith(".mjs")).sort();

async function exported(name, marker) {
  for (const file of files) {
    const text = readFileSync(path.join(dist, file), "utf8");
    if (!text.includes(marker)) continue;
    const list = text.match(/export \{([^}]*)\};?\s*$/);
    for (const item of list[1].split(",")) {
      const [local, alias] = item.trim().split(/\s+as\s+/);
      if (local === name) return (await import(pathToFileURL(path.join(dist, file)).href))[alias ?? local];
    }
    throw new Error(`${file} does not export ${name}`);
  }
  throw new Error(`no dist chunk contains ${marker}`);
}

const stagedInputFileName = await exported("stagedInputFileName", "//#region src/media/staged-inputs.ts");
const buildNote = await exported("buildInboundMediaNoteProjection", "//#region src/auto-reply/media-note.ts");

const cases = JSON.parse(readFileSync(process.argv[2], "utf8"));
const names = cases.names.map((n) => stagedInputFileName(n));
const notes = cases.notes.map((media) => buildNote({ media }).text ?? "");
process.stdout.write(JSON.stringify({ version, names, notes }));
