import type { Config } from "../../config.js";
import type { Command, Values } from "../command.js";
import { AppError } from "../../errors.js";
import { backup, BackupError, restore } from "../../services/backup.js";
import { fsck, formatFsckReport } from "../../services/fsck.js";
import { createServices, type Services } from "../../services/index.js";
import { createBlobStore } from "../../storage/index.js";


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

export const fsckCommand: Command = {
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

function mebibytes(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

function positionalDirectory(values: Values, command: string): string {
  const dir = values._positional;
  if (typeof dir !== "string" || dir === "") throw new AppError("validation_failed", `Name the backup directory: imgvault ${command} <dir>.`);
  return dir;
}

export const backupCommand: Command = {
  summary: "Write a consistent backup (SQLite snapshot plus every referenced blob, hash-checked) into a new directory; safe while the server runs.",
  usage:
    "imgvault backup <dir> [--data-dir D]\n\n" +
    "SQLite only: with DATABASE_URL=postgres://… use pg_dump for the metadata and bucket versioning or\n" +
    "replication for S3 instead. Exit status 0 when the backup is complete (dir/manifest.json written last).",
  options: { "data-dir": { type: "string" } },
  async run(values, config) {
    const dir = positionalDirectory(values, "backup");
    if (config.database.kind !== "sqlite") {
      process.stderr.write(
        "imgvault backup: the metadata is in PostgreSQL; back it up with pg_dump (and the S3 bucket with versioning or replication).\n",
      );
      return 2;
    }
    try {
      const manifest = await withServices(config, (services) => backup(services, dir));
      process.stdout.write(`Backed up ${manifest.images} images (${manifest.blobs} blobs, ${mebibytes(manifest.bytes)}) into ${dir}.\n`);
      return 0;
    } catch (error) {
      if (!(error instanceof BackupError)) throw error;
      process.stderr.write(`imgvault backup: ${error.message}\n`);
      return 1;
    }
  },
};

export const restoreCommand: Command = {
  summary: "Restore a backup into the configured instance (stop the server first): blobs, then the database.",
  usage:
    "imgvault restore <dir> [--force] [--data-dir D]\n\n" +
    "Blobs go to the configured store (STORAGE=fs or s3), the database to the data directory. Refuses to\n" +
    "replace an existing database unless --force (never while a server runs on it).",
  options: { "data-dir": { type: "string" }, force: { type: "boolean" } },
  async run(values, config) {
    const dir = positionalDirectory(values, "restore");
    const blobs = createBlobStore(config.storage);
    try {
      await blobs.check();
      const result = await restore(config, blobs, dir, { force: values.force === true });
      process.stdout.write(
        `Restored ${result.images} images (${result.blobs} blobs, ${mebibytes(result.bytes)}) from the backup of ${result.manifest.createdAt} into ${result.databaseFile} and ${result.storage}.\n`,
      );
      return 0;
    } catch (error) {
      if (!(error instanceof BackupError)) throw error;
      process.stderr.write(`imgvault restore: ${error.message}\n`);
      return 1;
    } finally {
      await blobs.close();
    }
  },
};

/** The operations commands, spread into the command table of `src/cli/main.ts`. */
export const operationsCommands: Record<string, Command> = {
  fsck: fsckCommand,
  backup: backupCommand,
  restore: restoreCommand,
};
