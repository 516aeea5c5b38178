import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { loadConfig, type Config } from "../../config.js";
import { openDatabase, type OpenDatabase } from "../../db/database.js";
import { AppError } from "../../errors.js";
import { MigrationConflictError, migrateStorage, type MigrationReport } from "../../services/migrate-storage.js";
import { closeRedis, connectRedis } from "../../services/redis.js";
import { loadKeyRing, sharedSigningKeysKey, signingKeysFileName } from "../../services/signing.js";
import type { BlobStore } from "../../storage/blob-store.js";
import { createBlobStore } from "../../storage/index.js";
import type { Command } from "../command.js";

/** Exit statuses: callers (scripts, CI) can tell a clean copy from a partial one. */
export const migrateExit = { done: 0, imagesSkipped: 3, verificationFailed: 4, failed: 8 } as const;

export const migrateStorageCommand: Command = {
  summary: "Copy an embedded instance (SQLite + files) to the configured PostgreSQL/S3; resumable, --verify checks every hash.",
  usage:
    "imgvault migrate-storage --from-data-dir D [--verify] [--json]\n\n" +
    "Copies users, access keys, images and their bytes from the embedded instance in D (D/imgvault.sqlite, D/blobs)\n" +
    "to the configuration of the environment, as `serve` would use it: DATABASE_URL=postgres://… and/or STORAGE=s3\n" +
    "with S3_*. Ids are kept. Run it again to copy what changed since (it converges on the source, skipping bytes\n" +
    "already there once their hash is verified); stop the old server before the last run, start the new nodes after.\n" +
    "--verify re-reads every migrated image's bytes from the target and checks their SHA-256 (wrong ones are copied again).\n" +
    "With REDIS_URL, the source's generated signing keys go to Redis (if it holds none), so old signed URLs keep working.\n" +
    "Exit status: 0 done, 3 images skipped (bytes missing or corrupt in the source: run `imgvault fsck` there),\n" +
    "4 verification found problems, 8 refused or failed.",
  options: {
    "from-data-dir": { type: "string" },
    "data-dir": { type: "string" },
    verify: { type: "boolean" },
    json: { type: "boolean" },
  },
  async run(values, targetConfig) {
    const fromDataDir = values["from-data-dir"];
    if (typeof fromDataDir !== "string" || fromDataDir === "") {
      throw new AppError("validation_failed", "--from-data-dir is required: the data directory of the embedded instance to copy.");
    }
    // The source is the embedded default of that directory, whatever the environment says.
    const sourceConfig = loadConfig({ IMGVAULT_DATA_DIR: resolve(fromDataDir) });
    refuseSameEndpoints(sourceConfig, targetConfig);

    const workDir = await mkdtemp(join(tmpdir(), "imgvault-migrate-"));
    const opened: Array<{ database: OpenDatabase; blobs: BlobStore }> = [];
    try {
      for (const config of [sourceConfig, targetConfig]) {
        const database = await openDatabase(config.database);
        opened.push({ database, blobs: createBlobStore(config.storage) });
      }
      const [source, target] = opened.map(({ database, blobs }) => ({ db: database.db, dialect: database.dialect, blobs }));
      process.stderr.write(`migrating ${describe(sourceConfig)} → ${describe(targetConfig)}\n`);
      const report = await migrateStorage(source!, target!, {
        workDir,
        verify: values.verify === true,
        log: (line) => process.stderr.write(`  ${line}\n`),
      });
      const signingKeys = await carrySigningKeys(sourceConfig, targetConfig);
      process.stdout.write(values.json ? `${JSON.stringify({ ...report, signingKeys }, null, 2)}\n` : `${formatReport(report)}signing keys: ${signingKeys}\n`);
      if (report.verification && report.verification.problems.length > 0) return migrateExit.verificationFailed;
      return report.skipped.length > 0 ? migrateExit.imagesSkipped : migrateExit.done;
    } catch (error) {
      if (error instanceof MigrationConflictError || error instanceof AppError) {
        const cause = error instanceof AppError && error.cause instanceof Error ? ` (${error.cause.message})` : "";
        process.stderr.write(`imgvault migrate-storage: ${error.message}${cause}\n`);
        return migrateExit.failed;
      }
      throw error;
    } finally {
      await Promise.allSettled(opened.flatMap(({ database, blobs }) => [database.close(), blobs.close()]));
      await rm(workDir, { recursive: true, force: true });
    }
  },
};

/**
 * URLs the old instance signed keep working when its generated key ring moves to where the nodes
 * share theirs: Redis (only if Redis holds no ring yet). Configured keys are the operator's to set.
 */
async function carrySigningKeys(source: Config, target: Config): Promise<string> {
  if (target.signingKeys !== undefined) return "configured (IMGVAULT_SIGNING_KEYS); the source's generated keys were not copied";
  const path = join(source.dataDir, signingKeysFileName);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return "the source has none (it never signed a URL)";
    throw error;
  }
  // Refuse to spread a damaged file: this throws a ConfigError naming it.
  await loadKeyRing(undefined, source.dataDir);
  if (target.redis === undefined) {
    return `not copied: without REDIS_URL each node keeps its own keys, so URLs signed by the old instance stop verifying (set REDIS_URL, or IMGVAULT_SIGNING_KEYS on every node)`;
  }
  const redis = await connectRedis(target.redis);
  try {
    const stored = await redis.set(sharedSigningKeysKey, text, "NX");
    return stored === "OK" ? "copied to Redis: URLs signed by the old instance keep working" : "Redis already holds a key ring; left as it is";
  } finally {
    await closeRedis(redis);
  }
}

function refuseSameEndpoints(source: Config, target: Config): void {
  const sameDatabase = source.database.kind === "sqlite" && target.database.kind === "sqlite" && source.database.file === target.database.file;
  const sameStorage = source.storage.kind === "fs" && target.storage.kind === "fs" && source.storage.dir === target.storage.dir;
  if (sameDatabase || sameStorage) {
    throw new AppError(
      "validation_failed",
      `The target (${describe(target)}) is the source itself. Name the target in the environment: DATABASE_URL=postgres://… and/or STORAGE=s3 with S3_BUCKET, S3_ENDPOINT, ….`,
    );
  }
}

function describe(config: Config): string {
  const database =
    config.database.kind === "sqlite" ? `sqlite:${config.database.file}` : redact(config.database.url);
  const storage =
    config.storage.kind === "fs" ? `fs:${config.storage.dir}` : `s3:${config.storage.endpoint ?? "aws"}/${config.storage.bucket}/${config.storage.prefix}`;
  return `${database} + ${storage}`;
}

function redact(url: string): string {
  const parsed = new URL(url);
  if (parsed.password) parsed.password = "***";
  return parsed.toString();
}

function formatReport(report: MigrationReport): string {
  const lines = [
    `users:        ${report.users.copied} copied, ${report.users.updated} updated, ${report.users.unchanged} already there`,
    `access keys:  ${report.accessKeys.copied} copied, ${report.accessKeys.updated} updated, ${report.accessKeys.removed} removed, ${report.accessKeys.unchanged} already there`,
    `images:       ${report.images.copied} copied, ${report.images.removed} removed or replaced, ${report.images.unchanged} already there`,
    `blobs:        ${report.blobs.copied} copied (${report.blobs.bytesCopied} bytes), ${report.blobs.alreadyThere} already there (verified)`,
  ];
  for (const skipped of report.skipped) {
    lines.push(`SKIPPED image ${skipped.id} "${skipped.name}": ${skipped.reason}`);
  }
  if (report.verification) {
    const { imagesChecked, bytesRead, repaired, problems } = report.verification;
    lines.push(`verified:     ${imagesChecked} images, ${bytesRead} bytes re-read and hashed, ${repaired.length} repaired, ${problems.length} problems`);
    for (const line of repaired) lines.push(`REPAIRED ${line}`);
    for (const problem of problems) lines.push(`PROBLEM ${problem}`);
  }
  return `${lines.join("\n")}\n`;
}

/** Spread into the command table of `src/cli/main.ts`. */
export const migrateStorageCommands: Record<string, Command> = {
  "migrate-storage": migrateStorageCommand,
};
