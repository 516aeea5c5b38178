import { createHash } from "node:crypto";
import { sql } from "kysely";
import type { Db } from "../db/database.js";
import type { Dialect } from "../db/migrations/index.js";
import type { ImageRow } from "../db/schema.js";
import { isAppError } from "../errors.js";
import type { BlobStore } from "../storage/blob-store.js";
import { StagingArea } from "./staging.js";

/** One side of a migration: a database (migrated) and a blob store. */
export interface MigrationEndpoint {
  db: Db;
  dialect: Dialect;
  blobs: BlobStore;
}

export interface MigrationOptions {
  /** Node-local scratch directory for bytes in transit (each blob is hashed on its way through). */
  workDir: string;
  /** After copying, re-read every migrated image's bytes from the target and check their SHA-256. */
  verify?: boolean;
  /** Progress lines (stderr in the CLI). */
  log?: (line: string) => void;
  /** Images per batch (and per target transaction). */
  batchSize?: number;
  /** Blobs copied at once. */
  parallelCopies?: number;
  now?: () => Date;
}

export interface MigrationReport {
  users: { copied: number; updated: number; unchanged: number };
  accessKeys: { copied: number; updated: number; removed: number; unchanged: number };
  images: { copied: number; removed: number; unchanged: number };
  blobs: { copied: number; bytesCopied: number; alreadyThere: number };
  /** Images left out because their bytes are missing or corrupt in the source (run `imgvault fsck` there). */
  skipped: Array<{ id: number; name: string; sha256: string; reason: string }>;
  /**
   * With `verify`: what was re-read, the bytes found wrong in the target and copied again from the
   * source (`repaired`), and what is still wrong (`problems`).
   */
  verification?: { imagesChecked: number; bytesRead: number; repaired: string[]; problems: string[] };
}

/** The target holds data that did not come from this source: refusing protects it. */
export class MigrationConflictError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "MigrationConflictError";
  }
}

/**
 * Copies an imgvault collection (users, access keys, images and the bytes they reference) from
 * one configuration to another, e.g. an embedded SQLite + filesystem data directory to
 * PostgreSQL + S3. Row ids are kept, so list cursors and signed URLs stay valid.
 *
 * The source is the authority and the copy converges on it: running again copies only what is
 * missing or changed since, and removes target images and keys the source no longer has, so a
 * first pass can run while the old instance still serves and a short second pass after it stops.
 * Blobs the target already holds are skipped only once their bytes hash to their key. Every blob
 * is hashed on its way through, so corrupt source bytes are never copied (the images using them
 * are reported); `verify` re-reads every migrated image's bytes and copies wrong ones again.
 * Unreferenced source blobs are garbage and are not copied.
 *
 * The target must be empty or an earlier migration of the same source; a target with other
 * users is refused (`MigrationConflictError`). Nodes must not serve the target until it is done.
 */
export async function migrateStorage(source: MigrationEndpoint, target: MigrationEndpoint, options: MigrationOptions): Promise<MigrationReport> {
  const log = options.log ?? (() => {});
  const now = () => (options.now ?? (() => new Date()))().toISOString();
  const batchSize = options.batchSize ?? 500;
  const staging = new StagingArea(options.workDir);
  await staging.init();
  await target.blobs.check();
  const report: MigrationReport = {
    users: { copied: 0, updated: 0, unchanged: 0 },
    accessKeys: { copied: 0, updated: 0, removed: 0, unchanged: 0 },
    images: { copied: 0, removed: 0, unchanged: 0 },
    blobs: { copied: 0, bytesCopied: 0, alreadyThere: 0 },
    skipped: [],
  };

  await migrateUsers(source, target, report);
  log(`users: ${report.users.copied} copied, ${report.users.updated} updated, ${report.users.unchanged} already there`);
  await mirrorTable(source, target, "access_keys", report.accessKeys);
  const keys = report.accessKeys;
  log(`access keys: ${keys.copied} copied, ${keys.updated} updated, ${keys.removed} removed, ${keys.unchanged} already there`);

  // Pass 1: drop target images that differ from the source or are gone from it, so the inserts of
  // pass 2 can never meet a stale (user, name) pair.
  const sourceImages = new Map<number, string>();
  for await (const row of iterateImages(source.db, batchSize)) sourceImages.set(row.id, rowKey(row));
  const stale: number[] = [];
  for await (const row of iterateImages(target.db, batchSize)) {
    if (sourceImages.get(row.id) === rowKey(row)) {
      sourceImages.delete(row.id);
      report.images.unchanged += 1;
    } else {
      stale.push(row.id);
    }
  }
  for (let start = 0; start < stale.length; start += batchSize) {
    await target.db.deleteFrom("images").where("id", "in", stale.slice(start, start + batchSize)).execute();
  }
  report.images.removed = stale.length;

  // Pass 2: copy the bytes of the missing images, then their rows, batch by batch.
  const copied = new Set<string>();
  let batch: ImageRow[] = [];
  const flush = async () => {
    await copyImageBatch(source, target, batch, { staging, copied, report, now: now(), parallel: options.parallelCopies ?? 4 });
    log(`images: ${report.images.copied} copied (${report.blobs.copied} blobs, ${formatBytes(report.blobs.bytesCopied)}), ${report.images.unchanged} already there`);
    batch = [];
  };
  for await (const row of iterateImages(source.db, batchSize)) {
    if (!sourceImages.has(row.id)) continue;
    batch.push(row);
    if (batch.length >= batchSize) await flush();
  }
  if (batch.length > 0) await flush();

  if (target.dialect === "postgres") {
    // Rows were inserted with their ids; new rows must be numbered after them.
    for (const table of ["users", "images"] as const) {
      await sql`SELECT setval(pg_get_serial_sequence(${table}, 'id'), GREATEST((SELECT MAX(id) FROM ${sql.table(table)}), 1))`.execute(target.db);
    }
  }

  if (options.verify) {
    log("verifying: reading every migrated image's bytes back from the target");
    report.verification = await verifyMigration(source, target, batchSize, (sha256, size) =>
      copyBlob(source, target, sha256, size, { staging, copied, report, now: now(), parallel: 1 }, { force: true }),
    );
  }
  return report;
}

/** Users are copied with their ids; one the source has under another name means a foreign target. */
async function migrateUsers(source: MigrationEndpoint, target: MigrationEndpoint, report: MigrationReport): Promise<void> {
  const sourceUsers = await source.db.selectFrom("users").selectAll().orderBy("id").execute();
  const targetUsers = new Map((await target.db.selectFrom("users").selectAll().execute()).map((user) => [user.id, user]));
  const sourceIds = new Set(sourceUsers.map((user) => user.id));
  const foreign = [...targetUsers.values()].filter((user) => !sourceIds.has(user.id));
  for (const user of sourceUsers) {
    const there = targetUsers.get(user.id);
    if (there && there.username !== user.username) foreign.push(there);
  }
  if (foreign.length > 0) {
    const names = foreign.slice(0, 5).map((user) => `"${user.username}" (id ${user.id})`).join(", ");
    throw new MigrationConflictError(
      `The target already holds users that did not come from this source: ${names}. Migrate into an empty database, or into an earlier migration of the same source.`,
    );
  }
  for (const user of sourceUsers) {
    const there = targetUsers.get(user.id);
    if (!there) {
      await insertWithId(target, "users", user);
      report.users.copied += 1;
    } else if (rowKey(there) !== rowKey(user)) {
      // A password changed since the last run.
      const { id, ...rest } = user;
      await target.db.updateTable("users").set(rest).where("id", "=", id).execute();
      report.users.updated += 1;
    } else {
      report.users.unchanged += 1;
    }
  }
}

/** Makes the target's rows of a small table (keyed by `id`) equal to the source's. */
async function mirrorTable(
  source: MigrationEndpoint,
  target: MigrationEndpoint,
  table: "access_keys",
  counts: { copied: number; updated: number; removed: number; unchanged: number },
): Promise<void> {
  const wanted = new Map((await source.db.selectFrom(table).selectAll().execute()).map((row) => [row.id, row]));
  const changed = new Set<string>();
  for (const row of await target.db.selectFrom(table).selectAll().execute()) {
    const fromSource = wanted.get(row.id);
    if (fromSource && rowKey(fromSource) === rowKey(row)) {
      wanted.delete(row.id);
      counts.unchanged += 1;
      continue;
    }
    // Gone from the source (revoked and deleted), or changed since the last run (used, revoked).
    await target.db.deleteFrom(table).where("id", "=", row.id).execute();
    if (fromSource) changed.add(row.id);
    else counts.removed += 1;
  }
  for (const row of wanted.values()) {
    await target.db.insertInto(table).values(row).execute();
    if (changed.has(row.id)) counts.updated += 1;
    else counts.copied += 1;
  }
}

interface BatchContext {
  staging: StagingArea;
  /** Hashes whose bytes are in the target (verified) during this run. */
  copied: Set<string>;
  report: MigrationReport;
  now: string;
  parallel: number;
}

async function copyImageBatch(source: MigrationEndpoint, target: MigrationEndpoint, rows: ImageRow[], context: BatchContext): Promise<void> {
  const sizes = new Map<string, number>();
  for (const row of rows) if (!context.copied.has(row.sha256)) sizes.set(row.sha256, row.bytes);
  const failures = new Map<string, string>();
  await inParallel([...sizes], context.parallel, async ([sha256, size]) => {
    const outcome = await copyBlob(source, target, sha256, size, context);
    if (outcome === "ok") context.copied.add(sha256);
    else failures.set(sha256, outcome);
  });
  const movable = rows.filter((row) => {
    const failure = failures.get(row.sha256);
    if (failure !== undefined) context.report.skipped.push({ id: row.id, name: row.name, sha256: row.sha256, reason: failure });
    return failure === undefined;
  });
  if (movable.length === 0) return;
  await target.db.transaction().execute(async (trx) => {
    const inTransaction = { ...target, db: trx };
    for (const sha256 of new Set(movable.map((row) => row.sha256))) {
      const size = movable.find((row) => row.sha256 === sha256)!.bytes;
      await trx
        .insertInto("blobs")
        .values({ sha256, size, state: "live", created_at: context.now, touched_at: context.now })
        .onConflict((oc) => oc.column("sha256").doUpdateSet({ state: "live", touched_at: context.now }))
        .execute();
    }
    for (const row of movable) await insertWithId(inTransaction, "images", row);
  });
  context.report.images.copied += movable.length;
}

/** Resolves "ok" once the target holds the blob's exact bytes, or why it cannot. */
async function copyBlob(
  source: MigrationEndpoint,
  target: MigrationEndpoint,
  sha256: string,
  size: number,
  context: BatchContext,
  options: { force?: boolean } = {},
): Promise<string> {
  const existing = options.force ? undefined : await target.blobs.stat(sha256);
  if (existing?.size === size && (await hashOfBlob(target.blobs, sha256)).sha256 === sha256) {
    context.report.blobs.alreadyThere += 1;
    return "ok";
  }
  let staged;
  try {
    staged = await context.staging.stage(await source.blobs.read(sha256));
  } catch (error) {
    if (isAppError(error) && error.code === "not_found") return "bytes missing in the source";
    throw error;
  }
  try {
    if (staged.sha256 !== sha256 || staged.size !== size) return `bytes corrupt in the source (they hash to ${staged.sha256.slice(0, 12)}…, ${staged.size} bytes)`;
    await target.blobs.putFile(staged.path, sha256, size);
    context.report.blobs.copied += 1;
    context.report.blobs.bytesCopied += size;
    return "ok";
  } finally {
    await staged.dispose();
  }
}

async function verifyMigration(
  source: MigrationEndpoint,
  target: MigrationEndpoint,
  batchSize: number,
  copyAgain: (sha256: string, size: number) => Promise<string>,
): Promise<NonNullable<MigrationReport["verification"]>> {
  const problems: string[] = [];
  const repaired: string[] = [];
  const expected = new Map<number, string>();
  for await (const row of iterateImages(source.db, batchSize)) expected.set(row.id, rowKey(row));
  let imagesChecked = 0;
  let bytesRead = 0;
  const hashed = new Map<string, string | undefined>();
  for await (const row of iterateImages(target.db, batchSize)) {
    const want = expected.get(row.id);
    expected.delete(row.id);
    if (want === undefined) problems.push(`target image ${row.id} "${row.name}" is not in the source`);
    else if (want !== rowKey(row)) problems.push(`target image ${row.id} "${row.name}" differs from the source's`);
    if (!hashed.has(row.sha256)) {
      let problem: string | undefined;
      try {
        const { sha256, size } = await hashOfBlob(target.blobs, row.sha256);
        bytesRead += size;
        if (sha256 !== row.sha256) problem = `its bytes hash to ${sha256}`;
      } catch (error) {
        if (!(isAppError(error) && error.code === "not_found")) throw error;
        problem = "its bytes are missing from the target store";
      }
      if (problem !== undefined) {
        // Wrong in the target: copy again from the source (hashed on the way), then re-read.
        const outcome = await copyAgain(row.sha256, row.bytes);
        const again = outcome === "ok" ? await hashOfBlob(target.blobs, row.sha256) : undefined;
        if (again?.sha256 === row.sha256) {
          repaired.push(`${row.sha256}: ${problem}; copied again from the source`);
          problem = undefined;
        } else {
          problem = `${problem}; copying it again failed: ${outcome === "ok" ? "still wrong" : outcome}`;
        }
      }
      hashed.set(row.sha256, problem);
    }
    const problem = hashed.get(row.sha256);
    if (problem !== undefined) problems.push(`target image ${row.id} "${row.name}" (${row.sha256.slice(0, 12)}…): ${problem}`);
    imagesChecked += 1;
  }
  for (const id of expected.keys()) problems.push(`source image ${id} is missing from the target`);
  return { imagesChecked, bytesRead, repaired, problems };
}

async function hashOfBlob(store: BlobStore, sha256: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of await store.read(sha256)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}

async function* iterateImages(db: Db, batchSize: number): AsyncGenerator<ImageRow> {
  let after = 0;
  for (;;) {
    const rows = await db.selectFrom("images").selectAll().where("id", ">", after).orderBy("id").limit(batchSize).execute();
    yield* rows;
    const last = rows.at(-1);
    if (!last || rows.length < batchSize) return;
    after = last.id;
  }
}

/** A row's columns in a stable order, as text: equal rows give equal keys on both dialects. */
function rowKey(row: object): string {
  return JSON.stringify(Object.entries(row).sort(([a], [b]) => a.localeCompare(b)).map(([name, value]) => [name, value ?? null]));
}

/** Inserts a row keeping its id (PostgreSQL identity columns need OVERRIDING SYSTEM VALUE for that). */
async function insertWithId(target: MigrationEndpoint, table: "users" | "images", row: object): Promise<void> {
  const entries = Object.entries(row);
  const overriding = target.dialect === "postgres" ? sql` OVERRIDING SYSTEM VALUE` : sql``;
  await sql`INSERT INTO ${sql.table(table)} (${sql.join(entries.map(([name]) => sql.ref(name)))})${overriding} VALUES (${sql.join(entries.map(([, value]) => value))})`.execute(target.db);
}

async function inParallel<T>(items: T[], parallel: number, work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const item = items[next]!;
      next += 1;
      await work(item);
    }
  };
  await Promise.all(Array.from({ length: Math.min(parallel, items.length) }, worker));
}

function formatBytes(bytes: number): string {
  if (bytes < 1024 * 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
}
