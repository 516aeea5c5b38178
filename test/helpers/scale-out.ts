/**
 * The scale-out backends for tests: a fresh PostgreSQL database per use (created on the server
 * TEST_DATABASE_URL names, dropped afterwards) and a unique key prefix in the S3 bucket the
 * environment names (S3_ENDPOINT, S3_BUCKET, …; `source scripts/ci-services.sh` sets them),
 * emptied afterwards. Nothing here is a stand-in: these are the real engines.
 */
import { randomBytes } from "node:crypto";
import { AbortMultipartUploadCommand, DeleteObjectsCommand, ListMultipartUploadsCommand, S3Client, paginateListObjectsV2 } from "@aws-sdk/client-s3";
import pg from "pg";
import { loadConfig } from "../../src/config.js";
import { S3BlobStore, type S3StorageConfig } from "../../src/storage/s3-blob-store.js";

export const postgresAdminUrl = process.env.TEST_DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/postgres";

/** Why scale-out tests cannot run here, or undefined when the S3 engine is configured. */
export const scaleOutSkipReason: string | undefined = process.env.S3_ENDPOINT
  ? undefined
  : "scale-out test skipped: set S3_ENDPOINT (e.g. `source scripts/ci-services.sh` starts the local S3 engine and exports the S3_* settings)";

/** True when `IMGVAULT_TEST_BACKEND=scale-out` asks test apps to run on PostgreSQL + S3. */
export function scaleOutRequested(): boolean {
  const backend = process.env.IMGVAULT_TEST_BACKEND;
  if (backend === undefined || backend === "" || backend === "embedded") return false;
  if (backend !== "scale-out") throw new Error(`IMGVAULT_TEST_BACKEND must be "embedded" or "scale-out", got "${backend}"`);
  if (scaleOutSkipReason) throw new Error(`IMGVAULT_TEST_BACKEND=scale-out needs the S3 engine: ${scaleOutSkipReason}`);
  return true;
}

async function withAdmin<T>(work: (client: pg.Client) => Promise<T>): Promise<T> {
  const client = new pg.Client({ connectionString: postgresAdminUrl });
  await client.connect();
  try {
    return await work(client);
  } finally {
    await client.end();
  }
}

export interface TestDatabase {
  name: string;
  url: string;
  drop(): Promise<void>;
}

/** Creates an empty database (openDatabase migrates it); `drop()` removes it, connections and all. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const name = `imgvault_test_${process.pid}_${randomBytes(5).toString("hex")}`;
  await withAdmin((client) => client.query(`CREATE DATABASE "${name}"`));
  const url = new URL(postgresAdminUrl);
  url.pathname = `/${name}`;
  return {
    name,
    url: url.toString(),
    drop: () => withAdmin((client) => client.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`)).then(() => undefined),
  };
}

/** Closes every connection to the database from the server side, as a restart or failover would. */
export function terminateConnections(databaseName: string): Promise<number> {
  return withAdmin(async (client) => {
    const result = await client.query(
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
      [databaseName],
    );
    return result.rowCount ?? 0;
  });
}

/** Refuses or admits new connections to the database (ALTER DATABASE … ALLOW_CONNECTIONS). */
export function allowConnections(databaseName: string, allow: boolean): Promise<void> {
  return withAdmin((client) => client.query(`ALTER DATABASE "${databaseName}" ALLOW_CONNECTIONS ${allow}`)).then(() => undefined);
}

/** The environment's S3 settings (`S3_*`), with a fresh prefix unique to this use. */
export function testS3Env(label = "test"): Record<string, string> {
  const env: Record<string, string> = { STORAGE: "s3", S3_BUCKET: process.env.S3_BUCKET ?? "imgvault-ci" };
  for (const name of ["S3_ENDPOINT", "S3_REGION", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY", "S3_FORCE_PATH_STYLE"]) {
    const value = process.env[name];
    if (value !== undefined && value !== "") env[name] = value;
  }
  env.S3_PREFIX = `imgvault-${label}-${process.pid}-${randomBytes(5).toString("hex")}/`;
  return env;
}

export function s3StorageConfig(env: Record<string, string>): S3StorageConfig {
  const storage = loadConfig(env).storage;
  if (storage.kind !== "s3") throw new Error("not an S3 configuration");
  return storage;
}

/** Removes every object and unfinished multipart upload under the prefix of `env` (testS3Env). */
export async function removeS3Prefix(env: Record<string, string>): Promise<void> {
  const storage = s3StorageConfig(env);
  if (storage.prefix === "") throw new Error("refusing to empty a whole bucket");
  const client = new S3Client({
    endpoint: storage.endpoint,
    region: storage.region,
    forcePathStyle: storage.forcePathStyle,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    ...(storage.accessKeyId && storage.secretAccessKey
      ? { credentials: { accessKeyId: storage.accessKeyId, secretAccessKey: storage.secretAccessKey } }
      : {}),
  });
  try {
    for await (const page of paginateListObjectsV2({ client }, { Bucket: storage.bucket, Prefix: storage.prefix })) {
      const keys = (page.Contents ?? []).flatMap((object) => (object.Key ? [{ Key: object.Key }] : []));
      if (keys.length > 0) await client.send(new DeleteObjectsCommand({ Bucket: storage.bucket, Delete: { Objects: keys } }));
    }
    const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: storage.bucket, Prefix: storage.prefix }));
    for (const upload of uploads.Uploads ?? []) {
      await client.send(new AbortMultipartUploadCommand({ Bucket: storage.bucket, Key: upload.Key, UploadId: upload.UploadId }));
    }
  } catch (error) {
    // A bucket nobody wrote to was never created: nothing to remove.
    if ((error as { name?: unknown }).name !== "NoSuchBucket") throw error;
  } finally {
    client.destroy();
  }
}

/** Makes sure the bucket exists (the first test of a run may find it missing). */
export async function ensureBucket(env: Record<string, string>): Promise<void> {
  const store = new S3BlobStore(s3StorageConfig(env));
  try {
    await store.check();
  } finally {
    await store.close();
  }
}

export interface ScaleOutBackend {
  /** Environment settings for loadConfig or a server process: DATABASE_URL, STORAGE=s3, S3_*. */
  env: Record<string, string>;
  database: TestDatabase;
  dispose(): Promise<void>;
}

/** A fresh database and a fresh S3 prefix; `dispose()` drops and empties them. */
export async function createScaleOutBackend(label = "test"): Promise<ScaleOutBackend> {
  const s3 = testS3Env(label);
  await ensureBucket(s3);
  const database = await createTestDatabase();
  return {
    env: { ...s3, DATABASE_URL: database.url },
    database,
    async dispose() {
      const results = await Promise.allSettled([database.drop(), removeS3Prefix(s3)]);
      const failed = results.find((result) => result.status === "rejected");
      if (failed) throw failed.reason;
    },
  };
}

/** Every row of every table of the database as text, for asserting what it does not hold. */
export async function postgresContentsAsText(url: string): Promise<string> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const tables = await client.query<{ name: string }>(
      "SELECT quote_ident(table_name) AS name FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
    );
    const parts: string[] = [];
    for (const { name } of tables.rows) {
      const rows = await client.query<{ row: string }>(`SELECT t::text AS row FROM ${name} t`);
      parts.push(...rows.rows.map((row) => row.row));
    }
    return parts.join("\n");
  } finally {
    await client.end();
  }
}
