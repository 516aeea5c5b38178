import type { Config } from "../config.js";
import { FsBlobStore } from "./fs-blob-store.js";
import { S3BlobStore } from "./s3-blob-store.js";

export { assertSha256, type BlobInfo, type BlobStore, type ByteRange } from "./blob-store.js";
export { FsBlobStore } from "./fs-blob-store.js";
export { S3BlobStore, type S3BlobStoreOptions, type S3StorageConfig } from "./s3-blob-store.js";

/**
 * The blob store the configuration names: the local filesystem by default, an S3-compatible bucket
 * with `STORAGE=s3`. The S3 store creates its bucket on the first `check()` if it is missing, so
 * call `check()` at start-up; it also holds pooled sockets that `close()` releases.
 */
export function createBlobStore(config: Config["storage"]): FsBlobStore | S3BlobStore {
  switch (config.kind) {
    case "fs":
      return new FsBlobStore(config.dir);
    case "s3":
      return new S3BlobStore(config);
  }
}
