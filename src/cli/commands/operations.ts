import type { ParseArgsConfig } from "node:util";
import type { Config } from "../../config.js";
import { AppError } from "../../errors.js";
import { fsck, formatFsckReport } from "../../services/fsck.js";
import { createServices, type Services } from "../../services/index.js";

type Options = NonNullable<ParseArgsConfig["options"]>;
type Values = Record<string, string | boolean | undefined>;

/** The shape of an entry of the command table in `src/cli/main.ts`. */
export interface OperationsCommand {
  summary: string;
  usage: string;
  options: Options;
  run(values: Values, config: Config): Promise<number>;
}

/** Exit statuses of `fsck`, after e2fsck's: callers can tell "fixed" from "still broken". */
export const fsckExit = { clean: 0, repaired: 1, problemsRemain: 4, failed: 8 } as const;

async function withServices<T>(config: Config, work: (services: Services) => Promise<T>): Promise<T> {
  const services = await createServices(config);
  try {
    return await work(services);
  } finally {
    await services.close();
  }
}

export const fsckCommand: OperationsCommand = {
  summary: "Check every image against its stored bytes; --repair removes leftovers (safe beside a running server).",
  usage:
    "imgvault fsck [--repair] [--quick] [--json] [--data-dir D]\n\n" +
    "Uses the same configuration as serve (DATABASE_URL, STORAGE, S3_*). Exit status: 0 nothing wrong, 1 every\n" +
    "problem found was repaired, 4 problems remain (e.g. images whose bytes are missing), 8 the check could not run.",
  options: {
    "data-dir": { type: "string" },
    repair: { type: "boolean" },
    quick: { type: "boolean" },
    json: { type: "boolean" },
  },
  async run(values, config) {
    try {
      const report = await withServices(config, (services) =>
        fsck(services, { repair: values.repair === true, quick: values.quick === true }),
      );
      process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatFsckReport(report));
      if (report.problems.length === 0) return fsckExit.clean;
      return report.clean ? fsckExit.repaired : fsckExit.problemsRemain;
    } catch (error) {
      const cause = error instanceof AppError && error.cause instanceof Error ? ` (${error.cause.message})` : "";
      process.stderr.write(`imgvault fsck: ${error instanceof Error ? error.message : String(error)}${cause}\n`);
      return fsckExit.failed;
    }
  },
};

/** The operations commands, spread into the command table of `src/cli/main.ts`. */
export const operationsCommands: Record<string, OperationsCommand> = {
  fsck: fsckCommand,
};
