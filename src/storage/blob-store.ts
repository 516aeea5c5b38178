import type { Readable } from "node:stream";

/** An inclusive byte range, as in HTTP Range. */
export interface ByteRange {
  start: number;
  end: number;
}

export interface BlobInfo {
  sha256: string;
  size: number;
  /** When the bytes were written; garbage collection leaves recent orphans to in-flight uploads. */
  modifiedAt: Date;
}

/**
 * Where image bytes live, keyed by the SHA-256 (lower-case hex) of their content. Each backend
 * (local filesystem, S3) implements this once and passes the contract suite in
 * `test/contracts/blob-store.contract.ts`.
 *
 * Failures are always `AppError`s from `src/errors.ts`: a missing blob is `not_found`; a full
 * store `insufficient_storage`; a store that cannot be reached or fails transiently
 * `storage_unavailable`. Backend errors (ENOENT, NoSuchKey, …) never escape an implementation.
 */
export interface BlobStore {
  /** A name for logs and health checks, e.g. `fs:/var/lib/imgvault/blobs`. */
  readonly description: string;

  /**
   * Stores the content of the local file `localPath` under `sha256`. The caller vouches that the
   * file's SHA-256 is `sha256` and its size is `size`. When the promise resolves the bytes are
   * durable (fsynced or acknowledged by the object store) and readable whole under that key; a
   * reader never sees a partial blob. Writing a blob that already exists is allowed and leaves
   * the same bytes. The file is left in place (the caller removes it), so a caller may put it again.
   */
  putFile(localPath: string, sha256: string, size: number): Promise<void>;

  /**
   * Opens the blob for reading, whole or the inclusive `range`. Rejects with `not_found` when it
   * does not exist, before any byte is produced. The range must lie within the blob.
   */
  read(sha256: string, range?: ByteRange): Promise<Readable>;

  /** The blob's size and write time, or undefined when it does not exist. */
  stat(sha256: string): Promise<BlobInfo | undefined>;

  /** Removes the blob. Removing a missing blob succeeds. */
  delete(sha256: string): Promise<void>;

  /** Every blob in the store, in no particular order. */
  list(): AsyncIterable<BlobInfo>;

  /** Resolves when the store answers; rejects with `storage_unavailable` otherwise. */
  check(): Promise<void>;

  /** Releases connections or handles; the store is not used afterwards. */
  close(): Promise<void>;
}

const sha256Pattern = /^[0-9a-f]{64}$/;

/** Keys are content hashes and nothing else, so no caller can steer a backend to another path. */
export function assertSha256(sha256: string): void {
  if (!sha256Pattern.test(sha256)) throw new TypeError("blob key must be a lower-case hex SHA-256");
}
