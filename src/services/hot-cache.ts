import { LRUCache } from "lru-cache";

/**
 * Recently served image bytes, keyed by content hash and bounded by total size. Content
 * addressing makes it always correct: replaced bytes have another hash.
 */
export class HotCache {
  private readonly cache: LRUCache<string, Buffer> | undefined;

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
    return this.cache?.get(sha256);
  }

  set(sha256: string, bytes: Buffer): void {
    this.cache?.set(sha256, bytes);
  }

  get stats(): { entries: number; bytes: number } {
    return { entries: this.cache?.size ?? 0, bytes: this.cache?.calculatedSize ?? 0 };
  }
}
