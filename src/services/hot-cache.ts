import { LRUCache } from "lru-cache";

/**
 * Recently served image bytes, keyed by content hash and bounded by total size. Content
 * addressing makes it always correct: replaced bytes have another hash.
 */
export class HotCache {
  private readonly cache: LRUCache<string, Buffer> | undefined;
  /** Lookups answered from memory, and lookups that were not, since start (for /metrics). */
  private lookups = { hits: 0, misses: 0 };

  constructor(
    maxBytes: number,
    readonly maxItemBytes: number,
  ) {
    this.cache =
      maxBytes > 0 && maxItemBytes > 0
        ? new LRUCache<string, Buffer>({ maxSize: maxBytes, maxEntrySize: maxItemBytes, sizeCalculation: (value) => Math.max(1, value.length) })
        : undefined;
  }

  get enabled(): boolean {
    return this.cache !== undefined;
  }

  /** Whether a blob of `size` bytes would be kept. */
  accepts(size: number): boolean {
    return this.cache !== undefined && size <= this.maxItemBytes;
  }

  get(sha256: string): Buffer | undefined {
    const found = this.cache?.get(sha256);
    if (found) this.lookups.hits += 1;
    else this.lookups.misses += 1;
    return found;
  }

  set(sha256: string, bytes: Buffer): void {
    this.cache?.set(sha256, bytes);
  }

  get stats(): { entries: number; bytes: number; hits: number; misses: number } {
    return { entries: this.cache?.size ?? 0, bytes: this.cache?.calculatedSize ?? 0, ...this.lookups };
  }
}
