import type { KeyScope } from "../../db/schema.js";
import { AppError } from "../../errors.js";
import { requireString, withAccounts, type Command } from "../command.js";

const units: Record<string, number> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };
/** The longest lifetime the API accepts (10 years), kept the same here. */
const maxLifetimeSeconds = 10 * 366 * 86_400;

/**
 * `--expires-in` as a moment: seconds, or a number with s, m, h, d or w (`90m`, `30d`).
 * Undefined when the option is absent (a key that does not expire).
 */
export function expiryFromOption(value: string | boolean | undefined, now = new Date()): Date | undefined {
  if (value === undefined) return undefined;
  const match = typeof value === "string" ? /^(\d{1,10})([smhdw]?)$/.exec(value.trim()) : null;
  const seconds = match ? Number(match[1]) * (units[match[2] || "s"] ?? 1) : NaN;
  if (!Number.isFinite(seconds) || seconds < 1 || seconds > maxLifetimeSeconds) {
    throw new AppError("validation_failed", "--expires-in is a duration such as 3600, 90m, 12h, 30d or 8w (at most 10 years).");
  }
  return new Date(now.getTime() + seconds * 1000);
}

export function scopeFromOption(value: string | boolean | undefined): KeyScope {
  if (value === undefined) return "read-write";
  if (value === "read" || value === "read-write") return value;
  throw new AppError("validation_failed", "--scope is read or read-write.");
}



/** Administrative key commands: they act on the database directly, as list-keys and revoke-key do. */
export const keyCommands: Record<string, Command> = {
  "create-key": {
    summary: "Print a new access key for an existing user, with a label, a scope and an expiry.",
    usage: "imgvault create-key --username NAME [--label L] [--scope read|read-write] [--expires-in 30d] [--data-dir D]",
    options: { "data-dir": { type: "string" }, username: { type: "string" }, label: { type: "string" }, scope: { type: "string" }, "expires-in": { type: "string" } },
    async run(values, config) {
      const username = requireString(values, "username");
      const scope = scopeFromOption(values.scope);
      const expiresAt = expiryFromOption(values["expires-in"]) ?? null;
      return withAccounts(config, async (accounts) => {
        const user = await accounts.findUser(username);
        const { key, row } = await accounts.issueKey(user.id, { label: String(values.label ?? "cli"), scope, expiresAt });
        process.stderr.write(`Created ${row.id} (${row.scope}${row.expires_at ? `, expires ${row.expires_at}` : ""}).\n`);
        process.stdout.write(`${key}\n`);
        return 0;
      });
    },
  },
  "rotate-key": {
    summary: "Revoke one of a user's keys and print a new one with the same label, scope and expiry.",
    usage: "imgvault rotate-key --username NAME KEY_ID [--data-dir D]",
    options: { "data-dir": { type: "string" }, username: { type: "string" } },
    async run(values, config) {
      const username = requireString(values, "username");
      const keyId = String(values._positional ?? "");
      if (!keyId) throw new AppError("validation_failed", "Name the key id to rotate (see list-keys).");
      return withAccounts(config, async (accounts) => {
        const user = await accounts.findUser(username);
        const current = (await accounts.listKeys(user.id)).find((row) => row.id === keyId && row.revoked_at === null);
        if (!current) throw new AppError("key_not_found");
        const { key, row } = await accounts.rotateKey({ userId: user.id, username: user.username, keyId, scope: current.scope });
        process.stderr.write(`Revoked ${keyId}; created ${row.id}.\n`);
        process.stdout.write(`${key}\n`);
        return 0;
      });
    },
  },
};
