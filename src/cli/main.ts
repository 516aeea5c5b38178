#!/usr/bin/env node
import { parseArgs } from "node:util";
import { loadConfig, ConfigError } from "../config.js";
import { AppError } from "../errors.js";
import { serve } from "../server.js";
import { dataDirOption, type Command, type Values } from "./command.js";
import { accountCommands } from "./commands/accounts.js";
import { keyCommands } from "./commands/keys.js";
import { migrateStorageCommands } from "./commands/migrate-storage.js";
import { operationsCommands } from "./commands/operations.js";

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
  ...accountCommands,
  ...operationsCommands,
  ...keyCommands,
  ...migrateStorageCommands,
};

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
