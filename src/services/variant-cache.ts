import { createHash, randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm, stat, unlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";

export interface VariantCacheOptions {
  /** The cache's own directory: everything in it belongs to the cache and may be deleted. */
  dir: string;
  /** Byte cap; least recently used variants are evicted beyond it. 0 stores nothing (single flight still applies). */
  maxBytes: number;
  /** Failures of the disk cache itself (full disk, …); a variant is still returned when they happen. */
  onError?: (error: unknown) => void;
}

export interface VariantResult {
  data: Buffer;
  /** True when the bytes came from the cache, false when `compute` made them for this call. */
  cached: boolean;
}

interface Entry {
  size: number;
  /** The recency stamp last written as the file's mtime; a hit rewrites it at most once a minute. */
  persistedAt: number;
}

const keyPattern = /^[0-9a-f]{64}$/;
const cleanMarker = "clean-shutdown";
const temporaryDir = "tmp";
const recencyWriteIntervalMs = 60_000;

/**
 * The cache key of one variant: SHA-256 of the source's content hash and the variant's canonical
 * parameters (`variantParams`). Replacing or deleting the source changes or orphans every key
 * made from it, so a stale variant is unreachable by construction; orphans age out by LRU.
 */
export function variantKey(sourceSha256: string, variantParams: string): string {
  return createHash("sha256").update(`${sourceSha256}\n${variantParams}`).digest("hex");
}

/**
 * Transformed variants on local disk, per node and disposable, with a byte cap and
 * least-recently-used eviction. The index lives in memory (a Map in recency order) and is rebuilt
 * from the directory at open. Files are written to a temporary name and renamed into place, so a
 * reader never sees part of one; identical concurrent requests share one computation.
 *
 * Files are not fsynced: `close()` leaves a marker, and a directory opened without it (after a
 * crash) is emptied instead of trusted. One process per directory.
 */
export class VariantCache {
  private readonly index = new Map<string, Entry>();
  private readonly inFlight = new Map<string, Promise<VariantResult>>();
  private readonly background = new Set<Promise<unknown>>();
  private readonly madeDirs = new Set<string>();
  private totalBytes = 0;
  /** Last recency stamp (ms), strictly increasing: file timestamps tick too coarsely to order writes. */
  private lastStamp = 0;

  private constructor(private readonly options: VariantCacheOptions) {}

  /** Opens the cache in `options.dir`, creating it, or rebuilding its index from the files there. */
  static async open(options: VariantCacheOptions): Promise<VariantCache> {
    const cache = new VariantCache(options);
    await cache.rebuild();
    return cache;
  }

  /** Bytes of variants on disk. */
  get bytes(): number {
    return this.totalBytes;
  }

  /** Number of variants on disk. */
  get size(): number {
    return this.index.size;
  }

  /** Whether `key` is cached, without reading it or changing its recency. */
  has(key: string): boolean {
    return this.index.has(key);
  }

  /** Cached keys, least recently used first. */
  keys(): string[] {
    return [...this.index.keys()];
  }

  /**
   * The variant under `key`: from disk when cached, otherwise made by `compute` and stored. Calls
   * for the same key while one is running share its result (or its error; errors are not cached).
   */
  getOrCompute(key: string, compute: () => Promise<Buffer>): Promise<VariantResult> {
    if (!keyPattern.test(key)) throw new TypeError("variant key must be a lower-case hex SHA-256");
    const running = this.inFlight.get(key);
    if (running) return running;
    const result = this.lookUpOrCompute(key, compute).finally(() => this.inFlight.delete(key));
    this.inFlight.set(key, result);
    return result;
  }

  /** Waits for pending disk work and marks the directory as cleanly closed. */
  async close(): Promise<void> {
    await Promise.allSettled([...this.inFlight.values()]);
    await Promise.allSettled([...this.background]);
    await writeFile(join(this.options.dir, cleanMarker), "");
  }

  private async lookUpOrCompute(key: string, compute: () => Promise<Buffer>): Promise<VariantResult> {
    const hit = await this.read(key);
    if (hit) return { data: hit, cached: true };
    const data = await compute();
    try {
      await this.store(key, data);
    } catch (error) {
      this.options.onError?.(error);
    }
    return { data, cached: false };
  }

  private pathOf(key: string): string {
    return join(this.options.dir, key.slice(0, 2), key);
  }

  private async read(key: string): Promise<Buffer | undefined> {
    const entry = this.index.get(key);
    if (!entry) return undefined;
    let data: Buffer;
    try {
      data = await readFile(this.pathOf(key));
    } catch (error) {
      // Evicted meanwhile, or removed from outside (the directory is disposable): a miss.
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") this.options.onError?.(error);
      this.forget(key);
      return undefined;
    }
    if (this.index.get(key) === entry) {
      this.index.delete(key);
      this.index.set(key, entry);
      if (Date.now() - entry.persistedAt > recencyWriteIntervalMs) entry.persistedAt = this.stampRecency(key);
    }
    return data;
  }

  private async store(key: string, data: Buffer): Promise<void> {
    if (data.length > this.options.maxBytes) return;
    const dir = join(this.options.dir, key.slice(0, 2));
    if (!this.madeDirs.has(dir)) {
      await mkdir(dir, { recursive: true });
      this.madeDirs.add(dir);
    }
    const temporary = join(this.options.dir, temporaryDir, `${key}.${randomBytes(6).toString("hex")}`);
    try {
      await writeFile(temporary, data);
      await rename(temporary, this.pathOf(key));
    } catch (error) {
      await unlink(temporary).catch(() => undefined);
      throw error;
    }
    this.forget(key);
    this.index.set(key, { size: data.length, persistedAt: this.stampRecency(key) });
    this.totalBytes += data.length;
    this.evict();
  }

  private evict(): void {
    for (const [key, entry] of this.index) {
      if (this.totalBytes <= this.options.maxBytes) break;
      this.index.delete(key);
      this.totalBytes -= entry.size;
      this.track(unlink(this.pathOf(key)));
    }
  }

  /** Records the key's recency in its file's mtime, so a restart rebuilds the same LRU order. */
  private stampRecency(key: string): number {
    this.lastStamp = Math.max(Date.now(), this.lastStamp + 1);
    const seconds = this.lastStamp / 1000;
    this.track(utimes(this.pathOf(key), seconds, seconds));
    return this.lastStamp;
  }

  private forget(key: string): void {
    const entry = this.index.get(key);
    if (!entry) return;
    this.index.delete(key);
    this.totalBytes -= entry.size;
  }

  private track(work: Promise<unknown>): void {
    const tracked = work
      .catch((error: NodeJS.ErrnoException) => {
        if (error.code !== "ENOENT") this.options.onError?.(error);
      })
      .finally(() => this.background.delete(tracked));
    this.background.add(tracked);
  }

  private async rebuild(): Promise<void> {
    const { dir } = this.options;
    await mkdir(dir, { recursive: true });
    const wasClosedCleanly = await unlink(join(dir, cleanMarker)).then(
      () => true,
      () => false,
    );
    await rm(join(dir, temporaryDir), { recursive: true, force: true });
    const found: Array<{ key: string; size: number; mtimeMs: number }> = [];
    for (const shard of await readdir(dir)) {
      if (!/^[0-9a-f]{2}$/.test(shard)) continue;
      const shardDir = join(dir, shard);
      if (!wasClosedCleanly) {
        // Unsynced files may be empty or short after a crash; the cache is disposable, so start over.
        await rm(shardDir, { recursive: true, force: true });
        continue;
      }
      this.madeDirs.add(shardDir);
      for (const name of await readdir(shardDir)) {
        if (!keyPattern.test(name) || !name.startsWith(shard)) continue;
        const info = await stat(join(shardDir, name));
        if (info.isFile()) found.push({ key: name, size: info.size, mtimeMs: info.mtimeMs });
      }
    }
    await mkdir(join(dir, temporaryDir), { recursive: true });
    found.sort((a, b) => a.mtimeMs - b.mtimeMs);
    for (const { key, size, mtimeMs } of found) {
      this.index.set(key, { size, persistedAt: mtimeMs });
      this.totalBytes += size;
      this.lastStamp = Math.max(this.lastStamp, Math.ceil(mtimeMs));
    }
    this.evict();
  }
}
