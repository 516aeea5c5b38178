/**
 * The test helper's scale-out switch: with IMGVAULT_TEST_BACKEND=scale-out a test app runs on a
 * fresh PostgreSQL database and its own S3 prefix, and both are gone after the test. CI runs the
 * whole route suite that way (`.ci/run`); this proves the switch does what it says.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import pg from "pg";
import { buildTestApp, type TestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { upload } from "../helpers/http.js";
import { ensureBucket, postgresAdminUrl, s3StorageConfig, scaleOutSkipReason } from "../helpers/scale-out.js";
import { S3BlobStore } from "../../src/storage/s3-blob-store.js";

async function databaseExists(name: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: postgresAdminUrl });
  await client.connect();
  try {
    return (await client.query("SELECT 1 FROM pg_database WHERE datname = $1", [name])).rowCount === 1;
  } finally {
    await client.end();
  }
}

describe("buildTestApp with IMGVAULT_TEST_BACKEND=scale-out", { skip: scaleOutSkipReason }, () => {
  test("runs on a fresh PostgreSQL database and S3 prefix, both removed after the test", async (t) => {
    const previous = process.env.IMGVAULT_TEST_BACKEND;
    process.env.IMGVAULT_TEST_BACKEND = "scale-out";
    t.after(() => {
      if (previous === undefined) delete process.env.IMGVAULT_TEST_BACKEND;
      else process.env.IMGVAULT_TEST_BACKEND = previous;
    });
    let built: TestApp | undefined;
    let sha256 = "";
    await t.test("inner test owning the app", async (inner) => {
      built = await buildTestApp(inner);
      const { app, config, userKey, storedBlobs } = built;
      assert.equal(config.database.kind, "postgres");
      assert.equal(config.storage.kind, "s3");
      assert.equal(app.services.database.dialect, "postgres");
      const response = await upload(app, await userKey(), fixture("valid/small.png").path, "a.png");
      assert.equal(response.statusCode, 201, response.body);
      sha256 = response.json<{ sha256: string }>().sha256;
      assert.deepEqual(await storedBlobs(), [sha256]);
    });
    assert.ok(built);
    const { config } = built;
    assert.ok(config.database.kind === "postgres" && config.storage.kind === "s3");
    assert.equal(await databaseExists(new URL(config.database.url).pathname.slice(1)), false, "the database is dropped");
    const env = { STORAGE: "s3", S3_BUCKET: config.storage.bucket, S3_PREFIX: config.storage.prefix };
    await ensureBucket({ ...process.env, ...env } as Record<string, string>);
    const store = new S3BlobStore(s3StorageConfig({ ...process.env, ...env } as Record<string, string>));
    try {
      assert.equal(await store.stat(sha256), undefined, "the prefix is emptied");
    } finally {
      await store.close();
    }
  });
});
