import { open, type FileHandle } from "node:fs/promises";
import { Readable } from "node:stream";
import type { ReadableStream as WebReadableStream } from "node:stream/web";
import { setTimeout as sleep } from "node:timers/promises";
import {
  CreateBucketCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadBucketCommand,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  paginateListObjectsV2,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { Upload } from "@aws-sdk/lib-storage";
import type { Config } from "../config.js";
import { AppError } from "../errors.js";
import { assertSha256, type BlobInfo, type BlobStore, type ByteRange } from "./blob-store.js";

export type S3StorageConfig = Extract<Config["storage"], { kind: "s3" }>;

/** Tuning that configuration does not expose; tests shrink these to exercise multipart and paging cheaply. */
export interface S3BlobStoreOptions {
  /** Bodies larger than this go up as a multipart upload (default 16 MiB). */
  multipartThresholdBytes?: number;
  /** Size of each multipart part (default 8 MiB; S3 refuses parts under 5 MiB except the last). */
  partSizeBytes?: number;
  /** Parts in flight per multipart upload; memory held is at most this × partSizeBytes (default 2). */
  partQueueSize?: number;
  /** Keys per ListObjectsV2 page (default 1000, the S3 maximum). */
  listPageSize?: number;
  /** Attempts per request for transient failures, the first included (default 3). */
  maxAttempts?: number;
  /** Milliseconds to establish a connection before the store counts as unreachable (default 5000). */
  connectionTimeoutMs?: number;
  /** Milliseconds a socket may stay idle mid-request or mid-body before it is abandoned (default 60000). */
  socketTimeoutMs?: number;
}

const mebibyte = 1024 * 1024;
const retryAfterSeconds = "5";

/**
 * Blobs as objects in an S3-compatible bucket under `<prefix><ab>/<cd>/<sha256>`, the same fan-out
 * as the filesystem store so listings and tooling look alike. Objects appear whole or not at all
 * (a PUT or a completed multipart upload is atomic in S3), which gives the contract's "never a
 * partial blob" without temp names.
 *
 * Written for AWS S3 and for Ceph RGW, MinIO and Garage: checksums only when an operation requires
 * them (RGW 16 rejects aws-chunked trailing checksums) and every body sent with a known length.
 * Call `close()` on shutdown to release pooled sockets.
 */
export class S3BlobStore implements BlobStore {
  readonly description: string;
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly multipartThresholdBytes: number;
  private readonly partSizeBytes: number;
  private readonly partQueueSize: number;
  private readonly listPageSize: number;
  private readonly maxAttempts: number;
  private bucketReady: Promise<void> | undefined;

  constructor(config: S3StorageConfig, options: S3BlobStoreOptions = {}) {
    if (config.bucket === "") throw new TypeError("S3 bucket name is required");
    this.bucket = config.bucket;
    this.prefix = normalisePrefix(config.prefix);
    this.multipartThresholdBytes = options.multipartThresholdBytes ?? 16 * mebibyte;
    this.partSizeBytes = options.partSizeBytes ?? 8 * mebibyte;
    this.partQueueSize = options.partQueueSize ?? 2;
    this.listPageSize = options.listPageSize ?? 1000;
    this.maxAttempts = options.maxAttempts ?? 3;
    this.description = `s3:${config.endpoint ?? "aws"}/${config.bucket}/${this.prefix}`;

    const clientConfig: S3ClientConfig = {
      region: config.region,
      forcePathStyle: config.forcePathStyle,
      requestChecksumCalculation: "WHEN_REQUIRED",
      responseChecksumValidation: "WHEN_REQUIRED",
      maxAttempts: this.maxAttempts,
      requestHandler: {
        connectionTimeout: options.connectionTimeoutMs ?? 5_000,
        socketTimeout: options.socketTimeoutMs ?? 60_000,
      },
      logger: quietStreamingRetryLogger,
    };
    if (config.endpoint !== undefined) clientConfig.endpoint = config.endpoint;
    if (config.accessKeyId !== undefined && config.secretAccessKey !== undefined) {
      clientConfig.credentials = { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey };
    }
    this.client = new S3Client(clientConfig);
  }

  private keyOf(sha256: string): string {
    assertSha256(sha256);
    return `${this.prefix}${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}`;
  }

  async putFile(localPath: string, sha256: string, size: number): Promise<void> {
    const key = this.keyOf(sha256);
    const multipart = size > this.multipartThresholdBytes;
    let bucketEnsured = false;
    for (let attempt = 1; ; attempt++) {
      try {
        if (multipart) await this.putMultipart(localPath, key, size);
        else await this.putSingle(localPath, key, size);
        return;
      } catch (error) {
        // A deployment whose start-up skipped check() still gets its bucket on the first upload.
        if (!bucketEnsured && (error as { name?: unknown }).name === "NoSuchBucket") {
          bucketEnsured = true;
          await this.ensureBucket();
          attempt--;
          continue;
        }
        // The SDK cannot retry a request whose body is a stream it has already consumed, so a
        // single PUT is retried here, reading the file afresh; multipart parts are retried by the SDK.
        const translated = translateS3Error(error);
        const transient = translated instanceof AppError && translated.code === "storage_unavailable";
        if (multipart || !transient || attempt >= this.maxAttempts) throw translated;
        await sleep(100 * 2 ** attempt);
      }
    }
  }

  private async putSingle(localPath: string, key: string, size: number): Promise<void> {
    const handle = await open(localPath, "r");
    try {
      await assertFileSize(handle, localPath, size);
      const body = handle.createReadStream({ autoClose: false });
      try {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: key, Body: body, ContentLength: size }));
      } finally {
        body.destroy();
      }
    } finally {
      await handle.close();
    }
  }

  /** lib-storage reads the stream a part at a time into buffers, so parts are retried by the SDK. */
  private async putMultipart(localPath: string, key: string, size: number): Promise<void> {
    const handle = await open(localPath, "r");
    try {
      await assertFileSize(handle, localPath, size);
      const body = handle.createReadStream({ autoClose: false });
      try {
        const upload = new Upload({
          client: this.client,
          params: { Bucket: this.bucket, Key: key, Body: body, ContentLength: size },
          partSize: this.partSizeBytes,
          queueSize: this.partQueueSize,
          leavePartsOnError: false,
        });
        // RGW answers CompleteMultipartUpload with an empty ETag; nothing here relies on it.
        await upload.done();
      } finally {
        body.destroy();
      }
    } finally {
      await handle.close();
    }
  }

  async read(sha256: string, range?: ByteRange): Promise<Readable> {
    const key = this.keyOf(sha256);
    if (range !== undefined) assertRange(range);
    try {
      const response = await this.client.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: key,
          Range: range === undefined ? undefined : `bytes=${range.start}-${range.end}`,
        }),
      );
      const body = response.Body;
      if (body instanceof Readable) return body;
      if (body === undefined) return Readable.from([]);
      // Only reached off Node's HTTP handler; the SDK's mixin converts any body to a web stream.
      return Readable.fromWeb(body.transformToWebStream() as WebReadableStream);
    } catch (error) {
      throw translateS3Error(error);
    }
  }

  async stat(sha256: string): Promise<BlobInfo | undefined> {
    const key = this.keyOf(sha256);
    try {
      const head = await this.client.send(new HeadObjectCommand({ Bucket: this.bucket, Key: key }));
      return { sha256, size: head.ContentLength ?? 0, modifiedAt: head.LastModified ?? new Date(0) };
    } catch (error) {
      const translated = translateS3Error(error);
      if (translated instanceof AppError && translated.code === "not_found") return undefined;
      throw translated;
    }
  }

  async delete(sha256: string): Promise<void> {
    const key = this.keyOf(sha256);
    try {
      // S3 answers 204 for a missing key too, which is exactly the contract.
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: key }));
    } catch (error) {
      const translated = translateS3Error(error);
      if (translated instanceof AppError && translated.code === "not_found") return;
      throw translated;
    }
  }

  async *list(): AsyncIterable<BlobInfo> {
    const pages = paginateListObjectsV2(
      { client: this.client, pageSize: this.listPageSize },
      { Bucket: this.bucket, Prefix: this.prefix },
    );
    try {
      for await (const page of pages) {
        for (const object of page.Contents ?? []) {
          const sha256 = this.shaOfKey(object.Key);
          if (sha256 === undefined) continue;
          yield { sha256, size: object.Size ?? 0, modifiedAt: object.LastModified ?? new Date(0) };
        }
      }
    } catch (error) {
      throw translateS3Error(error);
    }
  }

  /** The hash a key names, or undefined for foreign objects that share the prefix. */
  private shaOfKey(key: string | undefined): string | undefined {
    if (key === undefined || !key.startsWith(this.prefix)) return undefined;
    const match = /^([0-9a-f]{2})\/([0-9a-f]{2})\/([0-9a-f]{64})$/.exec(key.slice(this.prefix.length));
    if (!match) return undefined;
    const [, first, second, sha256] = match;
    return sha256 !== undefined && sha256.startsWith(`${first}${second}`) ? sha256 : undefined;
  }

  /**
   * Resolves when the bucket answers. A bucket that does not exist yet is created, so a fresh
   * deployment needs no manual step; a failed attempt is retried on the next call.
   */
  async check(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      if (!isMissingBucket(error)) throw unavailable(error);
      await this.ensureBucket();
    }
  }

  /** Creates the bucket unless it exists; concurrent callers (and other nodes) share the outcome. */
  ensureBucket(): Promise<void> {
    this.bucketReady ??= this.createBucket().catch((error: unknown) => {
      this.bucketReady = undefined;
      throw error;
    });
    return this.bucketReady;
  }

  private async createBucket(): Promise<void> {
    try {
      await this.client.send(new HeadBucketCommand({ Bucket: this.bucket }));
      return;
    } catch (error) {
      if (!isMissingBucket(error)) throw unavailable(error);
    }
    try {
      await this.client.send(new CreateBucketCommand({ Bucket: this.bucket }));
    } catch (error) {
      // Another node won the race to create it: the bucket exists, which is all we wanted.
      const name = (error as { name?: unknown }).name;
      if (name === "BucketAlreadyOwnedByYou") return;
      throw unavailable(error);
    }
  }

  /** Releases the client's pooled connections. */
  close(): Promise<void> {
    this.client.destroy();
    return Promise.resolve();
  }
}

function normalisePrefix(prefix: string): string {
  const trimmed = prefix.replace(/^\/+/, "");
  return trimmed === "" || trimmed.endsWith("/") ? trimmed : `${trimmed}/`;
}

async function assertFileSize(handle: FileHandle, localPath: string, size: number): Promise<void> {
  const actual = (await handle.stat()).size;
  // A wrong ContentLength would leave the request hanging or store a truncated object.
  if (actual !== size) throw new TypeError(`putFile: ${localPath} holds ${actual} bytes, caller said ${size}`);
}

function assertRange(range: ByteRange): void {
  if (!Number.isSafeInteger(range.start) || !Number.isSafeInteger(range.end) || range.start < 0 || range.end < range.start) {
    throw new TypeError(`invalid byte range ${range.start}-${range.end}`);
  }
}

function isMissingBucket(error: unknown): boolean {
  const { name, $metadata } = error as { name?: unknown; $metadata?: { httpStatusCode?: number } };
  return name === "NoSuchBucket" || name === "NotFound" || $metadata?.httpStatusCode === 404;
}

function unavailable(cause: unknown): AppError {
  if (cause instanceof AppError) return cause;
  return new AppError("storage_unavailable", undefined, { headers: { "retry-after": retryAfterSeconds }, cause });
}

const insufficientStorageNames = new Set(["EntityTooLarge", "QuotaExceeded", "InsufficientStorage", "StorageFull"]);

/**
 * Maps SDK and network errors onto the catalogue at the edge of the store, so services never see
 * an S3 error: a missing key is `not_found`; a full bucket or quota `insufficient_storage`; an
 * unsatisfiable range `range_not_satisfiable`; anything else from S3 or the network (throttling,
 * 5xx, refused or reset connections, timeouts, a missing bucket, missing or refused credentials)
 * `storage_unavailable` with Retry-After. Errors that did not come from S3 pass through unchanged.
 */
export function translateS3Error(error: unknown): unknown {
  if (error instanceof AppError) return error;
  if (typeof error !== "object" || error === null) return error;
  const { name, code, $metadata } = error as { name?: unknown; code?: unknown; $metadata?: { httpStatusCode?: number } };
  const status = $metadata?.httpStatusCode;

  // A missing bucket is a deployment fault, not a missing image: answer 503 rather than 404.
  if (name === "NoSuchBucket") return unavailable(error);
  if (name === "NoSuchKey" || name === "NotFound" || status === 404) {
    return new AppError("not_found", "No blob with that hash.", { cause: error });
  }
  if (name === "InvalidRange" || status === 416) return new AppError("range_not_satisfiable", undefined, { cause: error });
  if ((typeof name === "string" && insufficientStorageNames.has(name)) || status === 507) {
    return new AppError("insufficient_storage", undefined, { cause: error });
  }
  // No usable credentials is a deployment fault the SDK reports before any request is sent.
  const fromS3 = $metadata !== undefined || (typeof name === "string" && credentialErrorNames.has(name));
  const fromNetwork =
    (typeof code === "string" && networkErrorCodes.has(code)) ||
    name === "TimeoutError" ||
    name === "AbortError" ||
    (error instanceof Error && /socket hang up|ECONNREFUSED|ECONNRESET|EPIPE/i.test(error.message));
  if (fromS3 || fromNetwork) return unavailable(error);
  return error;
}

const credentialErrorNames = new Set(["CredentialsProviderError", "ProviderError", "TokenProviderError"]);

const networkErrorCodes = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "ETIMEDOUT",
  "EPIPE",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ERR_STREAM_PREMATURE_CLOSE",
]);

/**
 * Given a logger, the SDK logs every command's input and failure through it, and without one it
 * warns on the console each time a streamed upload fails (it cannot retry those). This store
 * retries such uploads itself and turns every failure into an AppError that keeps the SDK error
 * as its cause, for the caller to log once; so only the SDK's other warnings are worth printing.
 */
const quietStreamingRetryLogger = {
  debug: () => {},
  info: () => {},
  warn: (...content: unknown[]) => {
    if (typeof content[0] === "string" && content[0].includes("non-retryable streaming request")) return;
    console.warn(...content);
  },
  error: () => {},
};
