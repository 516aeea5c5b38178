import { AppError } from "../../errors.js";
import { ask, askHidden, readFirstLineOfStdin } from "../prompt.js";
import { dataDirOption, requireString, withAccounts, type Command, type Options, type Values } from "../command.js";
import { expiryFromOption, scopeFromOption } from "./keys.js";

const credentialOptions: Options = {
  ...dataDirOption,
  username: { type: "string" },
  "password-stdin": { type: "boolean" },
};

async function readCredentials(values: Values, confirm: boolean): Promise<{ username: string; password: string }> {
  const username = typeof values.username === "string" ? values.username : await ask("Username: ");
  if (values["password-stdin"]) return { username, password: await readFirstLineOfStdin() };
  if (!process.stdin.isTTY) throw new AppError("validation_failed", "No terminal to ask for a password: use --password-stdin.");
  const password = await askHidden("Password: ");
  if (confirm && (await askHidden("Password (again): ")) !== password) {
    throw new AppError("validation_failed", "The passwords do not match.");
  }
  return { username, password };
}

/** Users and their keys, acting on the database directly (also while the server runs). */
export const accountCommands: Record<string, Command> = {
  "get-access-key": {
    summary: "Print a new access key, creating the user if needed (asks for username and password).",
    usage: "imgvault get-access-key [--username NAME] [--password-stdin] [--label L] [--scope read|read-write] [--expires-in 30d] [--data-dir D]",
    options: { ...credentialOptions, label: { type: "string" }, scope: { type: "string" }, "expires-in": { type: "string" } },
    async run(values, config) {
      const expiresAt = expiryFromOption(values["expires-in"]) ?? null;
      const { username, password } = await readCredentials(values, false);
      return withAccounts(config, async (accounts) => {
        const { user, created } = await accounts.ensureUser(username, password);
        const { key } = await accounts.issueKey(user.id, { label: String(values.label ?? "cli"), scope: scopeFromOption(values.scope), expiresAt });
        if (created) process.stderr.write(`Created user "${user.username}".\n`);
        process.stdout.write(`${key}\n`);
        return 0;
      });
    },
  },
  "create-user": {
    summary: "Create a user (asks for the password twice).",
    usage: "imgvault create-user [--username NAME] [--password-stdin] [--data-dir D]",
    options: credentialOptions,
    async run(values, config) {
      const { username, password } = await readCredentials(values, true);
      return withAccounts(config, async (accounts) => {
        const user = await accounts.createUser(username, password);
        process.stdout.write(`Created user "${user.username}".\n`);
        return 0;
      });
    },
  },
  "set-password": {
    summary: "Change a user's password.",
    usage: "imgvault set-password [--username NAME] [--password-stdin] [--data-dir D]",
    options: credentialOptions,
    async run(values, config) {
      const { username, password } = await readCredentials(values, true);
      return withAccounts(config, async (accounts) => {
        await accounts.setPassword(username, password);
        process.stdout.write(`Password of "${username}" changed.\n`);
        return 0;
      });
    },
  },
  "list-keys": {
    summary: "List a user's access keys (never their secrets).",
    usage: "imgvault list-keys --username NAME [--json] [--data-dir D]",
    options: { ...dataDirOption, username: { type: "string" }, json: { type: "boolean" } },
    async run(values, config) {
      const username = requireString(values, "username");
      return withAccounts(config, async (accounts) => {
        const user = await accounts.findUser(username);
        const keys = await accounts.listKeys(user.id);
        if (values.json) {
          process.stdout.write(`${JSON.stringify(keys.map(({ key_hash: _hash, ...rest }) => rest), null, 2)}\n`);
          return 0;
        }
        for (const key of keys) {
          const state = key.revoked_at ? "revoked" : key.expires_at && Date.parse(key.expires_at) <= Date.now() ? "expired" : "active";
          process.stdout.write(
            [key.id, `${key.display_prefix}…`, key.scope, state, key.label || "-", `created ${key.created_at}`, `last used ${key.last_used_at ?? "never"}`].join("\t") + "\n",
          );
        }
        return 0;
      });
    },
  },
  "revoke-key": {
    summary: "Revoke one of a user's access keys by its id (see list-keys).",
    usage: "imgvault revoke-key --username NAME KEY_ID [--data-dir D]",
    options: { ...dataDirOption, username: { type: "string" } },
    async run(values, config) {
      const username = requireString(values, "username");
      const keyId = String(values._positional ?? "");
      if (!keyId) throw new AppError("validation_failed", "Name the key id to revoke.");
      return withAccounts(config, async (accounts) => {
        const user = await accounts.findUser(username);
        await accounts.revokeKey(user.id, keyId);
        process.stdout.write(`Revoked ${keyId}.\n`);
        return 0;
      });
    },
  },
};
