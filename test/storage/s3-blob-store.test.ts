/**
 * The S3 blob store against a real S3 engine (Ceph RGW from ../shared/s3engine, started by
 * scripts/ci-services.sh). Without S3_ENDPOINT the suites that need the engine are reported as
 * skipped; the error-translation tests need no engine and always run.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  AbortMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  PutObjectCommand,
  S3Client,
  S3ServiceException,
  paginateListObjectsV2,
} from "@aws-sdk/client-s3";
import { loadConfig } from "../../src/config.js";
import { AppError } from "../../src/errors.js";
import { S3BlobStore, translateS3Error, type S3BlobStoreOptions, type S3StorageConfig } from "../../src/storage/s3-blob-store.js";
import { blobStoreContract } from "../contracts/blob-store.contract.js";

const endpoint = process.env.S3_ENDPOINT;
const skip = endpoint ? false : "S3 suite skipped: set S3_ENDPOINT (e.g. `source scripts/ci-services.sh` starts a local S3 engine)";
const runId = randomBytes(4).toString("hex");
/** A bucket named by the environment is shared: this run stays under its own prefix there. */
const sharedBucket = process.env.S3_BUCKET;
const bucket = sharedBucket ?? `imgvault-test-${runId}`;
const runPrefix = `imgvault-contract-${runId}/`;

function s3Config(overrides: Partial<S3StorageConfig> = {}): S3StorageConfig {
  const storage = loadConfig({ ...process.env, STORAGE: "s3", S3_BUCKET: bucket }).storage;
  assert.equal(storage.kind, "s3");
  return { ...storage, prefix: runPrefix, ...overrides };
}

function rawClient(): S3Client {
  const config = s3Config();
  return new S3Client({
    endpoint: config.endpoint,
    region: config.region,
    forcePathStyle: config.forcePathStyle,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    ...(config.accessKeyId && config.secretAccessKey
      ? { credentials: { accessKeyId: config.accessKeyId, secretAccessKey: config.secretAccessKey } }
      : {}),
  });
}

/** Removes every object (and unfinished multipart upload) under `prefix`, then the bucket if asked. */
async function emptyBucket(client: S3Client, name: string, prefix: string, deleteBucket: boolean): Promise<void> {
  for await (const page of paginateListObjectsV2({ client }, { Bucket: name, Prefix: prefix })) {
    const keys = (page.Contents ?? []).flatMap((object) => (object.Key ? [{ Key: object.Key }] : []));
    if (keys.length > 0) await client.send(new DeleteObjectsCommand({ Bucket: name, Delete: { Objects: keys } }));
  }
  // Unfinished multipart uploads (none, unless a test failed half-way) would keep the bucket busy.
  let markers: { KeyMarker?: string; UploadIdMarker?: string } = {};
  for (;;) {
    const page = await client.send(new ListMultipartUploadsCommand({ Bucket: name, Prefix: prefix, ...markers }));
    for (const upload of page.Uploads ?? []) {
      await client.send(new AbortMultipartUploadCommand({ Bucket: name, Key: upload.Key, UploadId: upload.UploadId }));
    }
    if (!page.IsTruncated) break;
    markers = { KeyMarker: page.NextKeyMarker, UploadIdMarker: page.NextUploadIdMarker };
  }
  if (deleteBucket) await client.send(new DeleteBucketCommand({ Bucket: name }));
}

const contractOptions: S3BlobStoreOptions = {
  // Small enough that the contract's 12 MiB blob goes up in three parts and list() pages.
  multipartThresholdBytes: 8 * 1024 * 1024,
  partSizeBytes: 5 * 1024 * 1024,
  listPageSize: 2,
};

let bucketReady: Promise<void> | undefined;
let bucketCreatedHere = false;

async function ensureRunBucket(): Promise<void> {
  bucketReady ??= (async () => {
    const store = new S3BlobStore(s3Config());
    try {
      await store.check();
      bucketCreatedHere = sharedBucket === undefined;
    } finally {
      await store.close();
    }
  })();
  return bucketReady;
}

void after(async () => {
  if (skip || bucketReady === undefined) return;
  const client = rawClient();
  try {
    await emptyBucket(client, bucket, runPrefix, bucketCreatedHere);
  } finally {
    client.destroy();
  }
});

blobStoreContract(
  "S3",
  async () => {
    await ensureRunBucket();
    // A fresh prefix per test gives each test an empty store inside the run's bucket.
    const prefix = `${runPrefix}${randomBytes(4).toString("hex")}/`;
    const store = new S3BlobStore(s3Config({ prefix }), contractOptions);
    return { store, dispose: () => store.close() };
  },
  { skip },
);

void describe("S3BlobStore against the real engine", { skip }, () => {
  let workDir: string;
  let client: S3Client;

  void before(async () => {
    await ensureRunBucket();
    workDir = await mkdtemp(join(tmpdir(), "imgvault-s3-"));
    client = rawClient();
  });

  void after(async () => {
    client.destroy();
    await rm(workDir, { recursive: true, force: true });
  });

  async function localBlob(size: number): Promise<{ path: string; sha256: string; size: number }> {
    const bytes = randomBytes(size);
    const path = join(workDir, randomBytes(6).toString("hex"));
    await writeFile(path, bytes);
    return { path, sha256: createHash("sha256").update(bytes).digest("hex"), size };
  }

  void it("keys objects as <prefix><ab>/<cd>/<sha256> and lists only such keys", async () => {
    const prefix = `${runPrefix}layout-${randomBytes(3).toString("hex")}/`;
    const store = new S3BlobStore(s3Config({ prefix }));
    try {
      const blob = await localBlob(321);
      await store.putFile(blob.path, blob.sha256, blob.size);
      const key = `${prefix}${blob.sha256.slice(0, 2)}/${blob.sha256.slice(2, 4)}/${blob.sha256}`;
      const head = await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
      assert.equal(head.ContentLength, 321);
      // Foreign objects under the same prefix are not blobs and must not be listed as such.
      for (const foreign of ["notes.txt", `${blob.sha256.slice(0, 2)}/zz/${blob.sha256}`, `00/00/${blob.sha256}`]) {
        await client.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}${foreign}`, Body: "x" }));
      }
      const listed: string[] = [];
      for await (const info of store.list()) listed.push(info.sha256);
      assert.deepEqual(listed, [blob.sha256]);
    } finally {
      await store.close();
    }
  });

  void it("accepts a prefix without a trailing slash", async () => {
    const prefix = `${runPrefix}noslash-${randomBytes(3).toString("hex")}`;
    const store = new S3BlobStore(s3Config({ prefix }));
    try {
      const blob = await localBlob(10);
      await store.putFile(blob.path, blob.sha256, blob.size);
      const key = `${prefix}/${blob.sha256.slice(0, 2)}/${blob.sha256.slice(2, 4)}/${blob.sha256}`;
      assert.equal((await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }))).ContentLength, 10);
    } finally {
      await store.close();
    }
  });

  void it("uploads bodies above the threshold as multipart and smaller ones in one PUT", async () => {
    const prefix = `${runPrefix}multipart-${randomBytes(3).toString("hex")}/`;
    const store = new S3BlobStore(s3Config({ prefix }), { multipartThresholdBytes: 6 * 1024 * 1024, partSizeBytes: 5 * 1024 * 1024 });
    try {
      const large = await localBlob(11 * 1024 * 1024);
      const small = await localBlob(6 * 1024 * 1024);
      await store.putFile(large.path, large.sha256, large.size);
      await store.putFile(small.path, small.sha256, small.size);
      const etagOf = async (sha256: string) =>
        (await client.send(new HeadObjectCommand({ Bucket: bucket, Key: `${prefix}${sha256.slice(0, 2)}/${sha256.slice(2, 4)}/${sha256}` }))).ETag;
      // A multipart object's ETag ends in -<parts>; a single PUT's is the plain MD5.
      assert.match((await etagOf(large.sha256)) ?? "", /-3"?$/);
      assert.doesNotMatch((await etagOf(small.sha256)) ?? "", /-\d+"?$/);
    } finally {
      await store.close();
    }
  });

  void it("refuses a put whose size does not match the file, storing nothing", async () => {
    const store = new S3BlobStore(s3Config({ prefix: `${runPrefix}size-${randomBytes(3).toString("hex")}/` }));
    try {
      const blob = await localBlob(100);
      await assert.rejects(store.putFile(blob.path, blob.sha256, 99), TypeError);
      assert.equal(await store.stat(blob.sha256), undefined);
    } finally {
      await store.close();
    }
  });

  void it("check() creates a missing bucket, and a second store sharing it finds it ready", async () => {
    const name = `imgvault-test-${runId}-new-${randomBytes(3).toString("hex")}`;
    const first = new S3BlobStore(s3Config({ bucket: name, prefix: "" }));
    const second = new S3BlobStore(s3Config({ bucket: name, prefix: "" }));
    try {
      await Promise.all([first.check(), second.check()]);
      const blob = await localBlob(64);
      await first.putFile(blob.path, blob.sha256, blob.size);
      assert.equal((await second.stat(blob.sha256))?.size, 64);
    } finally {
      await first.close();
      await second.close();
      await emptyBucket(client, name, "", true);
    }
  });

  void it("answers storage_unavailable, not not_found, for reads from a missing bucket; a put creates it", async () => {
    const name = `imgvault-test-${runId}-absent-${randomBytes(3).toString("hex")}`;
    const store = new S3BlobStore(s3Config({ bucket: name, prefix: "" }));
    try {
      const blob = await localBlob(16);
      await assert.rejects(store.read(blob.sha256), appError("storage_unavailable"));
      await store.putFile(blob.path, blob.sha256, blob.size);
      assert.equal((await store.stat(blob.sha256))?.size, 16);
    } finally {
      await store.close();
      await emptyBucket(client, name, "", true);
    }
  });

  void it("answers storage_unavailable when the credentials are refused or missing", async () => {
    const blob = await localBlob(16);
    // Without configured keys the SDK's default chain runs: it finds none here (or ambient ones RGW refuses).
    for (const credentials of [{ secretAccessKey: "not-the-secret" }, { accessKeyId: undefined, secretAccessKey: undefined }]) {
      const store = new S3BlobStore(s3Config(credentials), { maxAttempts: 1 });
      try {
        await assert.rejects(store.check(), appError("storage_unavailable"));
        await assert.rejects(store.stat(blob.sha256), appError("storage_unavailable"));
        await assert.rejects(store.putFile(blob.path, blob.sha256, blob.size), appError("storage_unavailable"));
      } finally {
        await store.close();
      }
    }
  });

  void it("answers range_not_satisfiable for a range past the end", async () => {
    const store = new S3BlobStore(s3Config({ prefix: `${runPrefix}range-${randomBytes(3).toString("hex")}/` }));
    try {
      const blob = await localBlob(100);
      await store.putFile(blob.path, blob.sha256, blob.size);
      await assert.rejects(store.read(blob.sha256, { start: 100, end: 150 }), appError("range_not_satisfiable"));
    } finally {
      await store.close();
    }
  });
});

void describe("S3BlobStore when the engine cannot be reached", () => {
  void it("rejects every operation with storage_unavailable and Retry-After", async () => {
    const port = await closedPort();
    const store = new S3BlobStore(
      {
        kind: "s3",
        endpoint: `http://127.0.0.1:${port}`,
        region: "us-east-1",
        bucket: "imgvault-unreachable",
        accessKeyId: "key",
        secretAccessKey: "secret",
        forcePathStyle: true,
        prefix: "",
      },
      { maxAttempts: 1 },
    );
    const workDir = await mkdtemp(join(tmpdir(), "imgvault-s3-down-"));
    try {
      const path = join(workDir, "blob");
      await writeFile(path, "hello");
      const sha256 = createHash("sha256").update("hello").digest("hex");
      await assert.rejects(store.check(), appError("storage_unavailable"));
      await assert.rejects(store.read(sha256), appError("storage_unavailable"));
      await assert.rejects(store.stat(sha256), appError("storage_unavailable"));
      await assert.rejects(store.delete(sha256), appError("storage_unavailable"));
      await assert.rejects(store.putFile(path, sha256, 5), appError("storage_unavailable"));
      await assert.rejects(
        (async () => {
          for await (const info of store.list()) assert.fail(`listed ${info.sha256} from nowhere`);
        })(),
        appError("storage_unavailable"),
      );
    } finally {
      await store.close();
      await rm(workDir, { recursive: true, force: true });
    }
  });
});

void describe("translateS3Error", () => {
  const serviceError = (name: string, status: number) =>
    new S3ServiceException({ name, $fault: status >= 500 ? "server" : "client", $metadata: { httpStatusCode: status } });

  void it("maps S3 error names and statuses onto the catalogue", () => {
    const cases: Array<[unknown, AppError["code"]]> = [
      [serviceError("NoSuchKey", 404), "not_found"],
      [serviceError("NotFound", 404), "not_found"],
      [serviceError("NoSuchBucket", 404), "storage_unavailable"],
      [serviceError("InvalidRange", 416), "range_not_satisfiable"],
      [serviceError("EntityTooLarge", 400), "insufficient_storage"],
      [serviceError("QuotaExceeded", 403), "insufficient_storage"],
      [serviceError("SlowDown", 503), "storage_unavailable"],
      [serviceError("ServiceUnavailable", 503), "storage_unavailable"],
      [serviceError("InternalError", 500), "storage_unavailable"],
      [serviceError("AccessDenied", 403), "storage_unavailable"],
      [Object.assign(new Error("connect ECONNREFUSED 127.0.0.1:7480"), { code: "ECONNREFUSED" }), "storage_unavailable"],
      [Object.assign(new Error("timed out"), { name: "TimeoutError" }), "storage_unavailable"],
      [Object.assign(new Error("Could not load credentials from any providers"), { name: "CredentialsProviderError" }), "storage_unavailable"],
    ];
    for (const [error, code] of cases) {
      const translated = translateS3Error(error);
      assert.ok(translated instanceof AppError, `${String(error)} → AppError`);
      assert.equal(translated.code, code, String(error));
      assert.equal(translated.cause, error, "the SDK error is kept as the cause for logs");
      if (code === "storage_unavailable") assert.ok(translated.headers["retry-after"], "503 carries Retry-After");
    }
  });

  void it("lets errors that did not come from S3 through unchanged", () => {
    const bug = new TypeError("a bug");
    assert.equal(translateS3Error(bug), bug);
  });
});

function appError(code: AppError["code"]): (error: unknown) => boolean {
  return (error) => {
    assert.ok(error instanceof AppError, `expected AppError ${code}, got ${String(error)}`);
    assert.equal(error.code, code);
    if (error.status === 503) assert.ok(error.headers["retry-after"], "503 carries Retry-After");
    return true;
  };
}

/** A local port nothing listens on: bound, then released. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  await new Promise<void>((resolve) => server.close(() => resolve()));
  assert.ok(address && typeof address === "object");
  return address.port;
}
