import type { ParseArgsConfig } from "node:util";
import type { Config } from "../config.js";
import { openDatabase } from "../db/database.js";
import { AppError } from "../errors.js";
import { AccountsService } from "../services/accounts.js";
import { systemClock } from "../services/clock.js";

export type Options = NonNullable<ParseArgsConfig["options"]>;
/** Parsed flags; `_positional` holds the first positional argument. */
export type Values = Record<string, string | boolean | undefined>;

/** One entry of the command table in `main.ts`. `run` resolves the exit status (-1: keep running). */
export interface Command {
  summary: string;
  usage: string;
  options: Options;
  run(values: Values, config: Config): Promise<number>;
}

export const dataDirOption: Options = { "data-dir": { type: "string" } };

export function requireString(values: Values, name: string): string {
  const value = values[name];
  if (typeof value !== "string" || value === "") throw new AppError("validation_failed", `--${name} is required.`);
  return value;
}

/** Opens the configured database for one command and closes it afterwards. */
export async function withAccounts<T>(config: Config, work: (accounts: AccountsService) => Promise<T>): Promise<T> {
  const database = await openDatabase(config.database);
  try {
    // No principal cache: every CLI call is one short process.
    return await work(new AccountsService(database.db, systemClock, 0));
  } finally {
    await database.close();
  }
}
