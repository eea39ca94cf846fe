// Runs OpenClaw's own channel access helpers on the cases in the file named by argv[2] and
// prints {version, mentions, matches, telegramEntries, e164, commands, groups} (see
// scripts/oracle/channel_access.py). OPENCLAW_ORACLE_DIR names the npm install.
import { readFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";

const root = process.env.OPENCLAW_ORACLE_DIR;
if (!root) throw new Error("OPENCLAW_ORACLE_DIR is not set");
const dist = path.join(root, "node_modules", "openclaw", "dist");
const version = JSON.parse(readFileSync(path.join(dist, "..", "package.json"), "utf8")).version;
const files = readdirSync(dist).filter((f) => f.endsWith(".mjs")).sort();

// The chunk whose source contains `marker` and whose export list names `name`.
async function exported(name, marker) {
  for (const file of files) {
    const text = readFileSync(path.join(dist, file), "utf8");
    if (!text.includes(marker)) continue;
    const list = text.match(/export \{([^}]*)\};?\s*$/);
    if (!list) continue;
    for (const item of list[1].split(",")) {
      const [local, alias] = item.trim().split(/\s+as\s+/);
      if (local === name) return (await import(pathToFileURL(path.join(dist, file)).href))[alias ?? local];
    }
  }
  throw new Error(`no dist chunk with ${marker} exports ${name}`);
}

const compileSafe = await exported("compileSafeRegexDetailed", "function compileSafeRegexDetailed(");
const matchesMentionPatterns = await exported("matchesMentionPatterns", "function matchesMentionPatterns(");
const compileConfigRegexes = await exported("compileConfigRegexes", "function compileConfigRegexes(");
const normalizeTelegramEntry = await exported("normalizeTelegramAllowFromEntry", "function normalizeTelegramAllowFromEntry(");
const normalizeE164 = await exported("normalizeE164", "function normalizeE164(");
const normalizeCommandBody = await exported("normalizeCommandBody", "function normalizeCommandBody(");
const isAbortTrigger = await exported("isAbortTrigger", "function isAbortTrigger(");
const telegramAllow = await exported("normalizeAllowFrom", "//#region extensions/telegram/src/bot-access.ts");
const buildMentionRegexes = await exported("buildMentionRegexes", "function buildMentionRegexes(");
const groupPolicy = await exported("resolveChannelGroupPolicy", "function resolveChannelGroupPolicy(");
const baseAccess = await exported("evaluateTelegramGroupBaseAccess", "//#region extensions/telegram/src/group-access.ts");
const policyAccess = await exported("evaluateTelegramGroupPolicyAccess", "//#region extensions/telegram/src/group-access.ts");

const input = JSON.parse(readFileSync(process.argv[2], "utf8"));

const mentions = input.patterns.map((p) => compileSafe(p, "i").reason);
const matches = input.matches.map(({ patterns, text }) =>
  matchesMentionPatterns(text, compileConfigRegexes(patterns, "i").regexes),
);
const telegramEntries = input.telegramEntries.map((e) => {
  const n = normalizeTelegramEntry(e);
  return { normalized: n, numeric: /^\d+$/.test(n) };
});
const e164 = input.e164.map((n) => normalizeE164(n));

// clawmesh's four control commands, found the way OpenClaw's hasControlCommand finds them, on
// OpenClaw's own normalisation of the message (first line, `/cmd:`, `/cmd@bot`).
const ARGS = { new: true, reset: true, status: true, stop: false };
const commands = input.commands.map(({ text, bot }) => {
  const body = normalizeCommandBody(text.trim(), { botUsername: bot });
  const lowered = body.toLowerCase();
  for (const [name, acceptsArgs] of Object.entries(ARGS)) {
    const alias = `/${name}`;
    if (lowered === alias) return name;
    if (acceptsArgs && lowered.startsWith(alias) && /\s/.test(body.charAt(alias.length))) return name;
  }
  return isAbortTrigger(body) ? "stop" : null;
});

// Telegram group admission as shouldSkipTelegramGroupMessage evaluates it (no mention gating).
const groups = input.groups.map(({ telegram, chatId, senderId }) => {
  const cfg = { channels: { telegram } };
  const groupConfig = telegram.groups?.[chatId];
  const override = groupConfig?.allowFrom;
  const effectiveGroupAllow = telegramAllow(override ?? telegram.groupAllowFrom ?? telegram.allowFrom);
  const base = baseAccess({
    isGroup: true,
    groupConfig,
    hasGroupAllowOverride: override !== undefined,
    effectiveGroupAllow,
    senderId,
    enforceAllowOverride: true,
    requireSenderForAllowOverride: true,
  });
  if (!base.allowed) return { allowed: false, reason: base.reason };
  const access = policyAccess({
    isGroup: true,
    chatId,
    cfg,
    telegramCfg: telegram,
    groupConfig,
    effectiveGroupAllow,
    senderId,
    resolveGroupPolicy: (id, c) => groupPolicy({ cfg: c, channel: "telegram", groupId: String(id) }),
    enforcePolicy: true,
    enforceAllowlistAuthorization: true,
    allowEmptyAllowlistEntries: false,
    requireSenderForAllowlistAuthorization: true,
    checkChatAllowlist: true,
  });
  return { allowed: access.allowed, reason: access.reason ?? null };
});

// Which patterns apply: the agent's groupChat.mentionPatterns, messages.groupChat's, or ones
// derived from the agent's identity; scoped by channels.<ch>.mentionPatterns.
const agentMentions = input.agentMentions.map(({ config, agentId, channel, conversationId, text }) =>
  matchesMentionPatterns(text, buildMentionRegexes(config, agentId, { provider: channel, conversationId })),
);

console.log(JSON.stringify({ version, mentions, matches, telegramEntries, e164, commands, groups, agentMentions }));
