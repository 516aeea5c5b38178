#!/usr/bin/env node
import { parseArgs, type ParseArgsConfig } from "node:util";
import { loadConfig, ConfigError, type Config } from "../config.js";
import { openDatabase } from "../db/database.js";
import type { KeyScope } from "../db/schema.js";
import { AppError } from "../errors.js";
import { AccountsService } from "../services/accounts.js";
import { systemClock } from "../services/clock.js";
import { serve } from "../server.js";
import { ask, askHidden, readFirstLineOfStdin } from "./prompt.js";
import { operationsCommands } from "./commands/operations.js";
import { expiryFromOption, keyCommands } from "./commands/keys.js";
import { migrateStorageCommands } from "./commands/migrate-storage.js";

type Options = NonNullable<ParseArgsConfig["options"]>;
type Values = Record<string, string | boolean | undefined>;

interface Command {
  summary: string;
  usage: string;
  options: Options;
  run(values: Values, config: Config): Promise<number>;
}

const dataDirOption: Options = { "data-dir": { type: "string" } };
const credentialOptions: Options = {
  ...dataDirOption,
  username: { type: "string" },
  "password-stdin": { type: "boolean" },
};

async function withAccounts<T>(config: Config, work: (accounts: AccountsService) => Promise<T>): Promise<T> {
  const database = await openDatabase(config.database);
  try {
    return await work(new AccountsService(database.db, systemClock, 0));
  } finally {
    await database.close();
  }
}

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

const commands: Record<string, Command> = {
  serve: {
    summary: "Run the HTTP server (default 127.0.0.1:8000).",
    usage: "imgvault serve [--host H] [--port P] [--data-dir D]",
    options: { ...dataDirOption, host: { type: "string" }, port: { type: "string" } },
    async run(_values, config) {
      const { url } = await serve(config);
      process.stderr.write(`imgvault listening on ${url}\n`);
      return -1; // keep running until a signal
    },
  },
  "get-access-key": {
    summary: "Print a new access key, creating the user if needed (asks for username and password).",
    usage: "imgvault get-access-key [--username NAME] [--password-stdin] [--label L] [--scope read|read-write] [--expires-in 30d] [--data-dir D]",
    options: { ...credentialOptions, label: { type: "string" }, scope: { type: "string" }, "expires-in": { type: "string" } },
    async run(values, config) {
      const expiresAt = expiryFromOption(values["expires-in"]) ?? null;
      const { username, password } = await readCredentials(values, false);
      return withAccounts(config, async (accounts) => {
        const { user, created } = await accounts.ensureUser(username, password);
        const { key } = await accounts.issueKey(user.id, { label: String(values.label ?? "cli"), scope: parseScope(values.scope), expiresAt });
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
  ...operationsCommands,
  ...keyCommands,
  ...migrateStorageCommands,
};

function requireString(values: Values, name: string): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") throw new AppError("validation_failed", `--${name} is required.`);
  return value;
}

function parseScope(value: string | boolean | undefined): KeyScope {
  if (value === undefined) return "read-write";
  if (value === "read" || value === "read-write") return value;
  throw new AppError("validation_failed", "--scope is read or read-write.");
}

function usage(): string {
  const lines = Object.entries(commands).map(([name, command]) => `  ${name.padEnd(16)}${command.summary}`);
  return `Usage: imgvault <command> [options]\n\nCommands:\n${lines.join("\n")}\n\nRun "imgvault <command> --help" for a command's options.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(usage());
    return name === undefined ? 1 : 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`Unknown command "${name}".\n\n${usage()}`);
    return 2;
  }
  let values: Values;
  try {
    const parsed = parseArgs({ args: rest, options: { ...command.options, help: { type: "boolean", short: "h" } }, allowPositionals: true });
    values = { ...parsed.values, _positional: parsed.positionals[0] };
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n\nUsage: ${command.usage}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(`${command.summary}\n\nUsage: ${command.usage}\n`);
    return 0;
  }
  try {
    const port = typeof values.port === "string" ? Number(values.port) : undefined;
    const config = loadConfig(process.env, {
      host: typeof values.host === "string" ? values.host : undefined,
      port,
      dataDir: typeof values["data-dir"] === "string" ? values["data-dir"] : undefined,
    });
    return await command.run(values, config);
  } catch (error) {
    if (error instanceof ConfigError || error instanceof AppError) {
      process.stderr.write(`imgvault: ${error.message}\n`);
      return error instanceof ConfigError ? 2 : 1;
    }
    throw error;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code >= 0) process.exitCode = code;
  },
  (error: unknown) => {
    process.stderr.write(`imgvault: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exitCode = 1;
  },
);
