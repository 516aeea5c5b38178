import { createHash } from "node:crypto";
import { rm, stat } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import { BlobsRepository } from "../db/repositories/blobs.js";
import { inTransaction } from "../db/repositories/index.js";
import { IntegrityRepository, type ImageReference } from "../db/repositories/integrity.js";
import { isAppError } from "../errors.js";
import type { BlobStore } from "../storage/blob-store.js";
import type { FsBlobStore } from "../storage/fs-blob-store.js";
import type { Services } from "./index.js";

/**
 * What can be wrong with a collection, from worst to harmless:
 * - `missing_bytes`: images reference bytes the store does not have (never repaired: restore them).
 * - `corrupt_bytes`: the stored bytes do not hash to their name, or their size differs from what
 *   the images record (never repaired: restore them).
 * - `missing_blob_row`: images reference bytes that exist but have no bookkeeping row, so collection
 *   could not track them (repaired: the row is recreated).
 * - `referenced_blob_deleting`: a collector marked bytes for removal that images still reference
 *   (repaired: marked live again).
 * - `stuck_deleting`: a collection stopped half-way (repaired: finished).
 * - `orphan_blob`: bytes (or a bookkeeping row without bytes) that nothing references, older than
 *   the collection grace period (repaired: collected).
 * - `untracked_object`: bytes in the store without a bookkeeping row (repaired: adopted into
 *   bookkeeping, then collected when older than the grace period).
 * - `temp_file`: a staged upload or a half-written blob left by a crash, older than the grace
 *   period (repaired: removed).
 */
export type FsckProblemKind =
  | "missing_bytes"
  | "corrupt_bytes"
  | "missing_blob_row"
  | "referenced_blob_deleting"
  | "stuck_deleting"
  | "orphan_blob"
  | "untracked_object"
  | "temp_file";

/** Kinds `--repair` cannot fix: the bytes are gone or damaged, and only a backup has them. */
export const unrepairableKinds: ReadonlySet<FsckProblemKind> = new Set(["missing_bytes", "corrupt_bytes"]);

export interface FsckProblem {
  kind: FsckProblemKind;
  /** One human sentence. */
  detail: string;
  sha256?: string;
  /** The images affected, when images are (at most 20 named). */
  images?: Array<{ username: string; name: string }>;
  /** A local file (temporary files). */
  path?: string;
  repaired: boolean;
}

export interface FsckReport {
  storage: string;
  repair: boolean;
  checked: {
    images: number;
    blobRows: number;
    storedObjects: number;
    /** Blobs whose bytes were read and hashed (all referenced ones, unless `quick`). */
    blobsHashed: number;
    bytesHashed: number;
    tempFiles: number;
  };
  /** Things a live server is in the middle of, within the grace period: not problems. */
  inFlight: { unreferencedBlobs: number; tempFiles: number };
  problems: FsckProblem[];
  /** No problem remains (none was found, or every one was repaired). */
  clean: boolean;
}

export interface FsckOptions {
  repair?: boolean;
  /** Check existence and size only; skip reading and hashing the bytes. */
  quick?: boolean;
  /** Blobs hashed at once (bounded, so a large store is read at a steady pace). */
  concurrency?: number;
}

export type FsckServices = Pick<Services, "config" | "database" | "blobs" | "staging" | "images" | "clock">;

const batchSize = 500;
/** A `deleting` row seen twice this far apart belongs to no running collector. */
const stuckRecheckMs = 1000;

/**
 * Checks every image against its bytes and the bookkeeping of the blobs, and with `repair`
 * fixes what can be fixed without losing anything. Safe beside a live server: it reads through
 * the same protocol the server writes by, removes unreferenced bytes only through the collector's
 * protocol (mark `deleting` while unreferenced and untouched for the grace period, then remove),
 * re-checks before reporting bytes missing (a concurrent delete may have just collected them),
 * and leaves alone anything younger than the grace period.
 */
export async function fsck(services: FsckServices, options: FsckOptions = {}): Promise<FsckReport> {
  const { database, blobs, staging, images, config, clock } = services;
  const repair = options.repair ?? false;
  const integrity = new IntegrityRepository(database.db);
  const blobRows = new BlobsRepository(database.db);
  const now = () => clock().getTime();
  const graceCutoff = () => new Date(now() - config.gcGraceMs).toISOString();

  const report: FsckReport = {
    storage: blobs.description,
    repair,
    checked: { images: 0, blobRows: 0, storedObjects: 0, blobsHashed: 0, bytesHashed: 0, tempFiles: 0 },
    inFlight: { unreferencedBlobs: 0, tempFiles: 0 },
    problems: [],
    clean: true,
  };
  const problem = (entry: Omit<FsckProblem, "repaired">, repaired = false) => report.problems.push({ ...entry, repaired });
  const named = (refs: ImageReference[]) => refs.map(({ username, name }) => ({ username, name }));

  // 1. Images whose blob bookkeeping is missing or being collected.
  const reportedWithoutRow = new Set<string>();
  const withoutLiveBlob = new Map<string, { blobState: string | null; refs: ImageReference[] }>();
  for (const row of await integrity.imagesWithoutLiveBlob()) {
    const entry = withoutLiveBlob.get(row.sha256) ?? { blobState: row.blobState, refs: [] };
    entry.refs.push(row);
    withoutLiveBlob.set(row.sha256, entry);
  }
  for (const [sha256, { blobState, refs: rows }] of withoutLiveBlob) {
    report.checked.images += rows.length;
    const refs = named(rows);
    const info = await blobs.stat(sha256);
    if (!info) {
      await reportMissingBytes(sha256);
    } else if (blobState === null) {
      reportedWithoutRow.add(sha256);
      const repaired = repair && (await integrity.adopt(sha256, info.size, clock().toISOString()));
      problem({ kind: "missing_blob_row", sha256, images: refs, detail: `No bookkeeping row for the bytes of ${describe(refs)}.` }, repaired);
    } else {
      const repaired = repair && (await integrity.revive(sha256));
      problem(
        { kind: "referenced_blob_deleting", sha256, images: refs, detail: `The bytes of ${describe(refs)} were marked for collection while referenced.` },
        repaired,
      );
    }
  }

  /** Reports bytes missing, unless a concurrent delete released them and a collector removed them. */
  async function reportMissingBytes(sha256: string): Promise<void> {
    const refs = named(await integrity.imagesWithSha(sha256));
    if (refs.length === 0 || (await blobs.stat(sha256))) return;
    problem({
      kind: "missing_bytes",
      sha256,
      images: refs,
      detail: `The bytes of ${describe(refs)} are missing from ${blobs.description}; restore them from a backup.`,
    });
  }

  // 2. Every bookkeeping row: referenced bytes exist, have the right size and hash; the rest are collectable.
  const deletingSeen = new Set<string>();
  const verify = boundedRunner(options.concurrency ?? 4);
  let batch: Array<{ sha256: string; size: number; state: string; touched_at: string }> = [];
  const checkBatch = async () => {
    const refs = await integrity.referencesOf(batch.map((row) => row.sha256));
    const cutoff = graceCutoff();
    for (const row of batch) {
      report.checked.blobRows += 1;
      const ref = refs.get(row.sha256);
      if (row.state === "deleting") {
        if (!ref) deletingSeen.add(row.sha256); // referenced ones were handled in step 1
        continue;
      }
      if (ref) {
        report.checked.images += ref.images;
        await verify(() => checkReferencedBlob(row.sha256, ref.minBytes, ref.maxBytes));
      } else if (row.touched_at <= cutoff) {
        const exists = (await blobs.stat(row.sha256)) !== undefined;
        const repaired = repair && (await images.collect(row.sha256));
        problem(
          {
            kind: "orphan_blob",
            sha256: row.sha256,
            detail: exists ? "Bytes no image references, past the grace period." : "A bookkeeping row without bytes or images, past the grace period.",
          },
          repaired,
        );
      } else {
        report.inFlight.unreferencedBlobs += 1;
      }
    }
    batch = [];
  };

  async function checkReferencedBlob(sha256: string, minBytes: number, maxBytes: number): Promise<void> {
    const info = await blobs.stat(sha256);
    if (!info) {
      await reportMissingBytes(sha256);
      return;
    }
    if (info.size !== minBytes || info.size !== maxBytes) {
      const refs = named(await integrity.imagesWithSha(sha256));
      problem({
        kind: "corrupt_bytes",
        sha256,
        images: refs,
        detail: `The stored bytes of ${describe(refs)} are ${info.size} bytes long, the images record ${minBytes === maxBytes ? minBytes : `${minBytes}-${maxBytes}`}.`,
      });
      return;
    }
    if (options.quick) return;
    const actual = await hashBlob(blobs, sha256).catch((error: unknown) => {
      if (isAppError(error) && error.code === "not_found") return undefined; // collected meanwhile
      throw error;
    });
    if (actual === undefined) return;
    report.checked.blobsHashed += 1;
    report.checked.bytesHashed += actual.size;
    if (actual.sha256 !== sha256 || actual.size !== info.size) {
      const refs = named(await integrity.imagesWithSha(sha256));
      problem({
        kind: "corrupt_bytes",
        sha256,
        images: refs,
        detail: `The stored bytes of ${describe(refs)} hash to ${actual.sha256.slice(0, 12)}…, not to their name; restore them from a backup.`,
      });
    }
  }

  for await (const row of blobRows.iterateAll(batchSize)) {
    batch.push(row);
    if (batch.length >= batchSize) await checkBatch();
  }
  await checkBatch();
  await verify.drain();

  // 3. Stored objects without a bookkeeping row.
  let objects: Array<{ sha256: string; size: number; modifiedAt: Date }> = [];
  const checkObjects = async () => {
    const tracked = await integrity.blobRowsAmong(objects.map((object) => object.sha256));
    for (const object of objects) {
      report.checked.storedObjects += 1;
      if (tracked.has(object.sha256) || reportedWithoutRow.has(object.sha256)) continue;
      // Collectors remove bytes before their row: make sure these were not just collected.
      if (!(await blobs.stat(object.sha256))) continue;
      if ((await integrity.blobRowsAmong([object.sha256])).size > 0) continue;
      let repaired = false;
      if (repair) {
        await integrity.adopt(object.sha256, object.size, object.modifiedAt.toISOString());
        await images.collect(object.sha256);
        repaired = true;
      }
      problem({ kind: "untracked_object", sha256: object.sha256, detail: `Stored bytes (${object.size} bytes) without a bookkeeping row.` }, repaired);
    }
    objects = [];
  };
  for await (const object of blobs.list()) {
    objects.push(object);
    if (objects.length >= batchSize) await checkObjects();
  }
  await checkObjects();

  // 4. Collections that stopped half-way: `deleting` at the start and still after a pause.
  if (deletingSeen.size > 0) {
    let stuck = await stillDeleting(blobRows, deletingSeen);
    if (stuck.length > 0) {
      await sleep(stuckRecheckMs);
      stuck = await stillDeleting(blobRows, new Set(stuck));
    }
    for (const sha256 of stuck) {
      let repaired = false;
      if (repair) {
        // As a collector finishes: under the `deleting` row's lock, so no other collector or upload interleaves.
        await inTransaction(database.db, async (repos) => {
          if (!(await repos.blobs.lockDeleting(sha256))) return;
          await blobs.delete(sha256);
          await repos.blobs.remove(sha256);
        });
        repaired = true;
      }
      problem({ kind: "stuck_deleting", sha256, detail: "A collection of unreferenced bytes stopped half-way." }, repaired);
    }
  }

  // 5. Temporary files left by a crash: staged uploads, and half-written blobs of the filesystem store.
  // Only a filesystem store has half-written files of its own (possibly behind a wrapper that forwards them).
  const withTemporaryFiles = blobs as BlobStore & Partial<Pick<FsBlobStore, "listTemporaryFiles">>;
  const storeTemps = typeof withTemporaryFiles.listTemporaryFiles === "function" ? await collect(withTemporaryFiles.listTemporaryFiles()) : [];
  const tempFiles = (await staging.leftovers(0)).concat(storeTemps);
  for (const path of tempFiles) {
    const info = await stat(path).catch(() => undefined);
    if (!info) continue;
    report.checked.tempFiles += 1;
    // ctime moves when a staged file is linked into the store, so it dates the last use of either.
    const ageMs = now() - Math.max(info.mtimeMs, info.ctimeMs);
    if (ageMs < config.gcGraceMs) {
      report.inFlight.tempFiles += 1;
      continue;
    }
    let repaired = false;
    if (repair) {
      await rm(path, { force: true });
      repaired = true;
    }
    problem({ kind: "temp_file", path, detail: `A temporary file left by an interrupted upload (${formatAge(ageMs)} old).` }, repaired);
  }

  report.clean = report.problems.every((entry) => entry.repaired);
  return report;
}

async function stillDeleting(repository: BlobsRepository, candidates: Set<string>): Promise<string[]> {
  return (await repository.listDeleting()).map((row) => row.sha256).filter((sha256) => candidates.has(sha256));
}

async function hashBlob(blobs: BlobStore, sha256: string): Promise<{ sha256: string; size: number }> {
  const hash = createHash("sha256");
  let size = 0;
  for await (const chunk of await blobs.read(sha256)) {
    hash.update(chunk as Buffer);
    size += (chunk as Buffer).length;
  }
  return { sha256: hash.digest("hex"), size };
}

async function collect<T>(items: AsyncIterable<T>): Promise<T[]> {
  const all: T[] = [];
  for await (const item of items) all.push(item);
  return all;
}

/** Runs at most `limit` jobs at once; `drain()` waits for all and rethrows the first failure. */
function boundedRunner(limit: number): ((job: () => Promise<void>) => Promise<void>) & { drain(): Promise<void> } {
  const running = new Set<Promise<void>>();
  let failure: unknown;
  const run = async (job: () => Promise<void>) => {
    if (failure !== undefined) throw failure;
    while (running.size >= limit) await Promise.race(running);
    const task = job()
      .catch((error: unknown) => {
        failure ??= error;
      })
      .finally(() => running.delete(task));
    running.add(task);
  };
  return Object.assign(run, {
    async drain() {
      await Promise.all(running);
      if (failure !== undefined) throw failure;
    },
  });
}

function describe(images: Array<{ username: string; name: string }>): string {
  if (images.length === 0) return "no image";
  const shown = images.slice(0, 3).map((image) => `${image.username}/${image.name}`);
  return images.length > 3 ? `${shown.join(", ")} and ${images.length - 3} more` : shown.join(", ");
}

function formatAge(ms: number): string {
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  if (ms < 7_200_000) return `${Math.round(ms / 60_000)} min`;
  return `${Math.round(ms / 3_600_000)} h`;
}

/** The report as the command prints it. */
export function formatFsckReport(report: FsckReport): string {
  const { checked, inFlight, problems } = report;
  const lines = [
    `Checked ${checked.images} images, ${checked.blobRows} blobs (${checked.blobsHashed} hashed, ${formatBytes(checked.bytesHashed)}), ` +
      `${checked.storedObjects} stored objects and ${checked.tempFiles} temporary files in ${report.storage}.`,
  ];
  if (inFlight.unreferencedBlobs > 0 || inFlight.tempFiles > 0) {
    lines.push(
      `Left alone (younger than the grace period, maybe in use by a running server): ${inFlight.unreferencedBlobs} unreferenced blobs, ${inFlight.tempFiles} temporary files.`,
    );
  }
  for (const entry of problems) {
    const subject = entry.path ?? (entry.sha256 ? `${entry.sha256.slice(0, 16)}…` : "");
    const outcome = entry.repaired ? "repaired" : unrepairableKinds.has(entry.kind) ? "NOT REPAIRABLE" : report.repair ? "not repaired" : "run with --repair";
    lines.push(`  ${entry.kind.padEnd(26)}${subject}  ${entry.detail} [${outcome}]`);
  }
  const repaired = problems.filter((entry) => entry.repaired).length;
  const remaining = problems.length - repaired;
  if (problems.length === 0) lines.push("No problems found.");
  else lines.push(`${problems.length} problems found, ${repaired} repaired, ${remaining} remaining.`);
  return `${lines.join("\n")}\n`;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}
