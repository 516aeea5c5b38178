import { createHash } from "node:crypto";
import { createWriteStream } from "node:fs";
import { copyFile, mkdir, open, readFile, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { pipeline } from "node:stream/promises";
import SQLite from "better-sqlite3";
import { sql } from "kysely";
import type { Config } from "../config.js";
import { openDatabase, type OpenDatabase } from "../db/database.js";
import { isAppError } from "../errors.js";
import type { BlobStore } from "../storage/blob-store.js";
import { FsBlobStore } from "../storage/fs-blob-store.js";

/**
 * What `imgvault backup` writes, last, into the backup directory: its presence marks a complete
 * backup. The directory holds `imgvault.sqlite` (a consistent snapshot of the metadata) and
 * `blobs/ab/cd/<sha256>` (every blob that snapshot references, hash-checked as it was copied).
 */
export interface BackupManifest {
  format: "imgvault-backup";
  version: 1;
  createdAt: string;
  images: number;
  blobs: number;
  bytes: number;
  /** Where the bytes came from (a description of the store). */
  source: string;
}

const manifestFile = "manifest.json";
const databaseFile = "imgvault.sqlite";
/** Snapshots retaken when bytes of the previous one were collected meanwhile (images deleted during the backup). */
const maxSnapshots = 5;

export class BackupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "BackupError";
  }
}

export interface BackupSource {
  database: OpenDatabase;
  blobs: BlobStore;
  clock: () => Date;
}

/**
 * Writes a consistent backup of a live instance into `dir` (which must be absent or empty):
 * the SQLite metadata by `VACUUM INTO` (a transactionally consistent snapshot that concurrent
 * writers do not block), then every blob that snapshot references, each checked against its hash
 * while it is copied. Blobs are immutable and named by their content, so copying them after the
 * snapshot is consistent, except that an image deleted meanwhile may have its bytes collected
 * before they are copied: then a fresh snapshot is taken (which no longer references them) and
 * only the bytes still missing are copied. Bytes copied for images the final snapshot does not
 * hold are removed again.
 */
export async function backup(source: BackupSource, dir: string): Promise<BackupManifest> {
  if (source.database.dialect !== "sqlite") {
    throw new BackupError("imgvault backup snapshots SQLite; for PostgreSQL use pg_dump (and bucket versioning or replication for S3).");
  }
  await assertEmptyDirectory(dir);
  const snapshot = join(dir, databaseFile);
  const partial = join(dir, `${databaseFile}.partial`);
  const scratch = join(dir, "tmp");
  await mkdir(scratch, { recursive: true });
  const target = new FsBlobStore(join(dir, "blobs"));
  const copied = new Map<string, number>();

  for (let attempt = 1; ; attempt += 1) {
    await rm(partial, { force: true });
    await sql`vacuum into ${partial}`.execute(source.database.db);
    const referenced = referencedBlobs(partial);
    const missing: string[] = [];
    for (const sha256 of referenced) {
      if (copied.has(sha256)) continue;
      const size = await copyBlob(source.blobs, sha256, target, scratch);
      if (size === undefined) missing.push(sha256);
      else copied.set(sha256, size);
    }
    if (missing.length === 0) {
      for (const sha256 of copied.keys()) {
        if (!referenced.has(sha256)) {
          await target.delete(sha256);
          copied.delete(sha256);
        }
      }
      break;
    }
    if (attempt >= maxSnapshots) {
      throw new BackupError(
        `${missing.length} blobs referenced by images are missing from ${source.blobs.description} (e.g. ${missing[0]}); run imgvault fsck.`,
      );
    }
  }
  await fsyncFile(partial);
  await rename(partial, snapshot);
  await rm(scratch, { recursive: true, force: true });

  const counts = new SQLite(snapshot, { readonly: true });
  let images: number;
  try {
    images = (counts.prepare("select count(*) as n from images").get() as { n: number }).n;
  } finally {
    counts.close();
  }
  const manifest: BackupManifest = {
    format: "imgvault-backup",
    version: 1,
    createdAt: source.clock().toISOString(),
    images,
    blobs: copied.size,
    bytes: [...copied.values()].reduce((sum, size) => sum + size, 0),
    source: source.blobs.description,
  };
  await writeDurably(join(dir, manifestFile), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

export interface RestoreResult {
  manifest: BackupManifest;
  images: number;
  blobs: number;
  bytes: number;
  databaseFile: string;
  storage: string;
}

/**
 * Restores a backup into the configured (stopped) instance: first every blob, checked against its
 * hash, into the configured store (the filesystem or S3), then the metadata snapshot, moved into
 * place atomically, then migrated and checked (every image's bytes present). A crash half-way
 * therefore never leaves metadata that references missing bytes. Refuses to replace an existing
 * database unless `force`.
 */
export async function restore(config: Config, blobs: BlobStore, dir: string, options: { force?: boolean } = {}): Promise<RestoreResult> {
  const manifest = await readManifest(dir);
  if (config.database.kind !== "sqlite") {
    throw new BackupError("imgvault restore writes a SQLite database; to move a backup into PostgreSQL, restore it into SQLite first and copy the tables, or use pg_restore for a pg_dump.");
  }
  const targetFile = config.database.file;
  if ((await exists(targetFile)) && !options.force) {
    throw new BackupError(`${targetFile} exists; restore into an empty data directory, or stop the server and pass --force to replace it.`);
  }

  const source = new FsBlobStore(join(dir, "blobs"));
  let blobCount = 0;
  let bytes = 0;
  for await (const info of source.list()) {
    const path = blobPath(join(dir, "blobs"), info.sha256);
    const actual = await hashFile(path);
    if (actual !== info.sha256) throw new BackupError(`The backup's copy of ${info.sha256} is damaged (it hashes to ${actual}).`);
    const existing = await blobs.stat(info.sha256);
    if (existing?.size !== info.size) await blobs.putFile(path, info.sha256, info.size);
    blobCount += 1;
    bytes += info.size;
  }

  await mkdir(dirname(targetFile), { recursive: true });
  const incoming = `${targetFile}.restoring`;
  await copyFile(join(dir, databaseFile), incoming);
  await fsyncFile(incoming);
  // A WAL or shared-memory file left by the replaced database would be replayed onto the restored one.
  await Promise.all([rm(`${targetFile}-wal`, { force: true }), rm(`${targetFile}-shm`, { force: true })]);
  await rename(incoming, targetFile);

  const database = await openDatabase(config.database);
  let images: number;
  try {
    const missing: string[] = [];
    for (const { sha256 } of await database.db.selectFrom("images").select("sha256").distinct().execute()) {
      if (!(await blobs.stat(sha256))) missing.push(sha256);
    }
    if (missing.length > 0) throw new BackupError(`${missing.length} blobs the restored images reference are not in the store (e.g. ${missing[0]}).`);
    images = Number((await database.db.selectFrom("images").select((eb) => eb.fn.countAll<number | string>().as("n")).executeTakeFirstOrThrow()).n);
  } finally {
    await database.close();
  }
  return { manifest, images, blobs: blobCount, bytes, databaseFile: targetFile, storage: blobs.description };
}

async function readManifest(dir: string): Promise<BackupManifest> {
  let manifest: Partial<BackupManifest>;
  try {
    manifest = JSON.parse(await readFile(join(dir, manifestFile), "utf8")) as Partial<BackupManifest>;
  } catch {
    throw new BackupError(`${dir} holds no complete imgvault backup (${manifestFile} is missing or unreadable).`);
  }
  if (manifest.format !== "imgvault-backup" || manifest.version !== 1) {
    throw new BackupError(`${dir}/${manifestFile} is not an imgvault backup this version can restore.`);
  }
  return manifest as BackupManifest;
}

/** The distinct blobs the snapshot's images reference. */
function referencedBlobs(snapshotFile: string): Set<string> {
  const snapshot = new SQLite(snapshotFile, { readonly: true });
  try {
    const found = new Set<string>();
    for (const row of snapshot.prepare("select distinct sha256 from images").iterate()) found.add((row as { sha256: string }).sha256);
    return found;
  } finally {
    snapshot.close();
  }
}

/**
 * Copies one blob into the backup's store, hashing it on the way; resolves its size, or undefined
 * when the source no longer has it (collected after the snapshot).
 */
async function copyBlob(from: BlobStore, sha256: string, to: FsBlobStore, scratch: string): Promise<number | undefined> {
  let stream;
  try {
    stream = await from.read(sha256);
  } catch (error) {
    if (isAppError(error) && error.code === "not_found") return undefined;
    throw error;
  }
  const part = join(scratch, `${sha256}.part`);
  const hash = createHash("sha256");
  let size = 0;
  try {
    await pipeline(
      stream,
      async function* (chunks: AsyncIterable<Buffer>) {
        for await (const chunk of chunks) {
          hash.update(chunk);
          size += chunk.length;
          yield chunk;
        }
      },
      createWriteStream(part),
    );
    const actual = hash.digest("hex");
    if (actual !== sha256) throw new BackupError(`The stored bytes of ${sha256} hash to ${actual}: they are damaged; run imgvault fsck.`);
    await to.putFile(part, sha256, size);
    return size;
  } finally {
    await rm(part, { force: true });
  }
}

function blobPath(root: string, sha256: string): string {
  return join(root, sha256.slice(0, 2), sha256.slice(2, 4), sha256);
}

async function hashFile(path: string): Promise<string> {
  const hash = createHash("sha256");
  const handle = await open(path, "r");
  try {
    for await (const chunk of handle.createReadStream()) hash.update(chunk as Buffer);
  } finally {
    await handle.close();
  }
  return hash.digest("hex");
}

async function assertEmptyDirectory(dir: string): Promise<void> {
  try {
    if ((await readdir(dir)).length > 0) throw new BackupError(`${dir} is not empty; back up into a new directory.`);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") {
      await mkdir(dir, { recursive: true });
      return;
    }
    if ((error as NodeJS.ErrnoException).code === "ENOTDIR") throw new BackupError(`${dir} is a file.`);
    throw error;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, "r+");
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function writeDurably(path: string, content: string): Promise<void> {
  const partial = `${path}.partial`;
  await writeFile(partial, content);
  await fsyncFile(partial);
  await rename(partial, path);
  const directory = await open(dirname(path), "r");
  try {
    await directory.sync();
  } finally {
    await directory.close();
  }
}

