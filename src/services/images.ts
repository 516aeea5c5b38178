import { dirname } from "node:path";
import type { Readable } from "node:stream";
import { setTimeout as sleep } from "node:timers/promises";
import type { Db } from "../db/database.js";
import { inTransaction, repositories, type Repositories } from "../db/repositories/index.js";
import { NameTakenError, type ImageContent } from "../db/repositories/images.js";
import type { ImageRow } from "../db/schema.js";
import { AppError, isAppError } from "../errors.js";
import { decodeFully, probeImage, type ImageInfo, type ImageLimits } from "../processing/probe.js";
import { stripMetadata, type StripMode } from "../processing/strip.js";
import type { WorkQueue } from "../processing/work-queue.js";
import type { BlobStore, ByteRange } from "../storage/blob-store.js";
import type { Clock } from "./clock.js";
import type { HotCache } from "./hot-cache.js";
import { nextFreeName, splitExtension, validateImageName } from "./names.js";
import { StagingArea, type StagedFile } from "./staging.js";

export interface ImagesServiceOptions {
  limits: ImageLimits;
  /** Unreferenced blobs touched within this window are left to uploads that may be committing them. */
  gcGraceMs: number;
  /** Where collection failures go; they never fail the request that triggered them. */
  onBackgroundError?: (error: unknown) => void;
}

export interface ImagePage {
  images: ImageRow[];
  total: number;
  nextCursor: string | undefined;
}

/** The bytes of an image: a buffer when they came from (or went into) the hot cache, else a stream. */
export type ImageBody = { kind: "buffer"; bytes: Buffer } | { kind: "stream"; stream: Readable };

/** Choices an upload makes about what is stored. */
export interface UploadOptions {
  /** Store a copy without this metadata instead of the bytes as sent. */
  strip?: StripMode;
}

export interface ImageUpdate extends UploadOptions {
  staged?: StagedFile;
  newName?: string;
  /** Only update when the image still holds this content (If-Match). */
  expectedSha256?: string;
}

export const defaultPageSize = 100;
export const maxPageSize = 1000;

/**
 * What the image operations mean: names, validation, content-addressed storage, transactions and
 * collection of bytes nobody references any more. Routes call this; it never sees HTTP.
 */
export class ImagesService {
  private readonly repos: Repositories;

  constructor(
    private readonly db: Db,
    private readonly blobs: BlobStore,
    private readonly queue: WorkQueue,
    private readonly hot: HotCache,
    private readonly clock: Clock,
    private readonly options: ImagesServiceOptions,
  ) {
    this.repos = repositories(db);
  }

  private now(): string {
    return this.clock().toISOString();
  }

  /** Proves the staged file is a whole image within the limits, in the bounded work queue. */
  inspect(staged: StagedFile): Promise<ImageInfo> {
    return this.queue.run(async () => {
      const info = await probeImage(staged.path, this.options.limits);
      await decodeFully(staged.path, this.options.limits);
      return info;
    });
  }

  /**
   * Proves the upload is a whole image and, when the upload asks for metadata to be stripped,
   * makes the cleaned copy that is stored instead (its own staged file: the caller disposes of it
   * when it is not the upload itself).
   */
  private async prepare(staged: StagedFile, strip: StripMode | undefined): Promise<{ file: StagedFile; info: ImageInfo }> {
    const info = await this.inspect(staged);
    if (strip === undefined) return { file: staged, info };
    const { maxPixels } = this.options.limits;
    const cleaned = await this.queue.run(async () => {
      try {
        // Beside the upload, in the same node-local staging area.
        return await new StagingArea(dirname(staged.path)).stage(await stripMetadata(staged.path, info, strip, maxPixels));
      } catch (error) {
        throw isAppError(error) ? error : new AppError("corrupt_image", "The image could not be written again without its metadata.", { cause: error });
      }
    });
    try {
      return { file: cleaned, info: await this.inspect(cleaned) };
    } catch (error) {
      await cleaned.dispose();
      throw error;
    }
  }

  async create(userId: number, rawName: string, staged: StagedFile, options: UploadOptions = {}): Promise<ImageRow> {
    const name = validateImageName(rawName);
    const { file, info } = await this.prepare(staged, options.strip);
    try {
      await this.storeBlob(file);
    } finally {
      if (file !== staged) await file.dispose();
    }
    const content = contentOf(file, info);
    let candidate = name;
    // The unique index decides between concurrent uploads of one name; a loser takes the next free name.
    for (let attempt = 0; attempt < 50; attempt += 1) {
      const now = this.now();
      try {
        return await this.repos.images.insert({ user_id: userId, name: candidate, ...content, created_at: now, updated_at: now });
      } catch (error) {
        if (!(error instanceof NameTakenError)) throw error;
        const { stem, extension } = splitExtension(name);
        candidate = nextFreeName(name, await this.repos.images.namesLike(userId, `${stem}-`, extension));
      }
    }
    throw new AppError("service_unavailable", "Too many concurrent uploads of this name; try again.", {
      headers: { "retry-after": "1" },
    });
  }

  async list(userId: number, options: { limit?: number; cursor?: string }): Promise<ImagePage> {
    const limit = options.limit ?? defaultPageSize;
    const beforeId = options.cursor === undefined ? undefined : decodeCursor(options.cursor);
    const [rows, counts] = await Promise.all([
      this.repos.images.listPage(userId, limit + 1, beforeId),
      this.repos.images.countForUser(userId),
    ]);
    const images = rows.slice(0, limit);
    const last = images.at(-1);
    return { images, total: counts.images, nextCursor: rows.length > limit && last ? encodeCursor(last.id) : undefined };
  }

  async find(userId: number, name: string): Promise<ImageRow> {
    const row = await this.repos.images.findByName(userId, name.normalize("NFC"));
    if (!row) throw new AppError("image_not_found");
    return row;
  }

  /** Opens an image's bytes, whole or a range. Small images are served from memory once read. */
  async openContent(row: ImageRow, range?: ByteRange): Promise<ImageBody> {
    try {
      if (range === undefined && this.hot.accepts(row.bytes)) {
        const cached = this.hot.get(row.sha256);
        if (cached) return { kind: "buffer", bytes: cached };
        const bytes = await readAll(await this.blobs.read(row.sha256));
        this.hot.set(row.sha256, bytes);
        return { kind: "buffer", bytes };
      }
      return { kind: "stream", stream: await this.blobs.read(row.sha256, range) };
    } catch (error) {
      // The image was deleted and collected between reading its row and opening its bytes.
      if (isAppError(error) && error.code === "not_found") throw new AppError("image_not_found");
      throw error;
    }
  }

  /** Replaces the bytes and/or renames, in one transaction; the old bytes stay readable until commit. */
  async update(userId: number, name: string, update: ImageUpdate): Promise<ImageRow> {
    const current = await this.find(userId, name);
    if (update.expectedSha256 !== undefined && current.sha256 !== update.expectedSha256) {
      throw new AppError("precondition_failed");
    }
    const newName = update.newName === undefined ? undefined : validateImageName(update.newName);
    if (update.strip !== undefined && !update.staged) {
      throw new AppError("invalid_parameter", "strip applies to an uploaded file; send one in the field \"image\".");
    }
    let content: ImageContent | undefined;
    if (update.staged) {
      const { file, info } = await this.prepare(update.staged, update.strip);
      try {
        await this.storeBlob(file);
      } finally {
        if (file !== update.staged) await file.dispose();
      }
      content = contentOf(file, info);
    }
    const updated = await inTransaction(this.db, async (repos) => {
      let row: ImageRow | undefined = current;
      if (content) {
        row = await repos.images.updateContent(current.id, content, this.now(), update.expectedSha256);
        if (!row) return undefined;
      }
      if (newName !== undefined && newName !== current.name) {
        try {
          row = await repos.images.rename(current.id, newName, this.now());
        } catch (error) {
          if (error instanceof NameTakenError) throw new AppError("name_taken", `An image named "${newName}" already exists.`);
          throw error;
        }
      }
      return row;
    });
    if (!updated) {
      // Deleted or replaced by someone else between our read and our write.
      const now = await this.repos.images.findByName(userId, current.name);
      throw now ? new AppError("precondition_failed") : new AppError("image_not_found");
    }
    if (updated.sha256 !== current.sha256) this.collectInBackground(current.sha256);
    return updated;
  }

  async delete(userId: number, name: string, expectedSha256?: string): Promise<ImageRow> {
    const normalised = name.normalize("NFC");
    const deleted = await this.repos.images.delete(userId, normalised, expectedSha256);
    if (!deleted) {
      const exists = await this.repos.images.findByName(userId, normalised);
      throw exists ? new AppError("precondition_failed") : new AppError("image_not_found");
    }
    this.collectInBackground(deleted.sha256);
    return deleted;
  }

  /**
   * Claims the blob and writes its bytes. Bytes already stored are not written again; a blob
   * that a collector is removing is waited for, then written afresh.
   */
  private async storeBlob(staged: StagedFile): Promise<void> {
    for (let attempt = 0; attempt < 100; attempt += 1) {
      if ((await this.repos.blobs.touch(staged.sha256, staged.size, this.now())) === "live") {
        const existing = await this.blobs.stat(staged.sha256);
        if (existing?.size !== staged.size) await this.blobs.putFile(staged.path, staged.sha256, staged.size);
        return;
      }
      await sleep(50);
    }
    throw new AppError("storage_unavailable", undefined, { headers: { "retry-after": "1" } });
  }

  /**
   * Removes a blob's bytes when no image references it and no upload touched it within the grace
   * period. Resolves whether it did.
   */
  async collect(sha256: string): Promise<boolean> {
    const touchedBefore = new Date(this.clock().getTime() - this.options.gcGraceMs).toISOString();
    if (!(await this.repos.blobs.markDeletingIfUnreferenced(sha256, touchedBefore))) return false;
    await this.finishCollection(sha256);
    return true;
  }

  private async finishCollection(sha256: string): Promise<void> {
    await this.blobs.delete(sha256);
    await this.repos.blobs.remove(sha256);
  }

  private collectInBackground(sha256: string): void {
    this.collect(sha256).catch((error: unknown) => this.options.onBackgroundError?.(error));
  }

  /** Finishes interrupted collections and collects every unreferenced blob past its grace period. */
  async sweep(): Promise<{ collected: number }> {
    let collected = 0;
    for (const row of await this.repos.blobs.listDeleting()) {
      await this.finishCollection(row.sha256);
      collected += 1;
    }
    const touchedBefore = new Date(this.clock().getTime() - this.options.gcGraceMs).toISOString();
    for (const row of await this.repos.blobs.listUnreferenced(touchedBefore)) {
      if (await this.collect(row.sha256)) collected += 1;
    }
    return { collected };
  }
}

function contentOf(staged: StagedFile, info: ImageInfo): ImageContent {
  return {
    sha256: staged.sha256,
    content_type: info.contentType,
    format: info.format,
    width: info.width,
    height: info.height,
    pages: info.pages,
    bytes: staged.size,
    has_gps: info.hasGps ? 1 : 0,
    metadata: null,
  };
}

function encodeCursor(id: number): string {
  return Buffer.from(`i:${id}`).toString("base64url");
}

function decodeCursor(cursor: string): number {
  const match = /^i:(\d{1,15})$/.exec(Buffer.from(cursor, "base64url").toString("utf8"));
  if (!match?.[1]) throw new AppError("invalid_cursor");
  return Number(match[1]);
}

async function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
