/**
 * `imgvault migrate-storage`, run as the real command in a child process: an embedded instance
 * (SQLite + files) with users, keys and images is copied to a fresh PostgreSQL database and S3
 * prefix; a scale-out app then serves identical listings and bytes with the old keys. Running it
 * again converges on later changes; `--verify` re-reads every hash and repairs wrong bytes.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import type { LightMyRequestResponse } from "fastify";
import { closeRedis, connectRedis } from "../../src/services/redis.js";
import { S3BlobStore } from "../../src/storage/s3-blob-store.js";
import { auth, buildTestApp, type TestApp } from "../helpers/app.js";
import { runCli } from "../helpers/cli.js";
import { fixture } from "../helpers/fixtures.js";
import { upload } from "../helpers/http.js";
import { createScaleOutBackend, s3StorageConfig, scaleOutSkipReason, type ScaleOutBackend } from "../helpers/scale-out.js";

const redisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

/** An embedded app whatever IMGVAULT_TEST_BACKEND says: SQLite and files in its data directory. */
function embeddedApp(t: TestContext): Promise<TestApp> {
  return buildTestApp(t, { DATABASE_URL: "", STORAGE: "fs" });
}

async function scaleOutApp(t: TestContext, backend: ScaleOutBackend): Promise<TestApp> {
  return buildTestApp(t, backend.env);
}

async function freshBackend(t: TestContext): Promise<ScaleOutBackend> {
  const backend = await createScaleOutBackend("migrate");
  t.after(() => backend.dispose());
  return backend;
}

/** The real command, its target named by `env` as a node's would be. */
function migrate(source: TestApp, env: Record<string, string>, ...flags: string[]) {
  return runCli(["migrate-storage", "--from-data-dir", source.dataDir, ...flags], { env: { REDIS_URL: "", ...env, IMGVAULT_TEST_BACKEND: "" } });
}

/** A Redis key prefix of this test's own, its keys removed afterwards. */
function redisEnv(t: TestContext): Record<string, string> {
  const prefix = `imgvault-migrate-${process.pid}-${randomBytes(4).toString("hex")}:`;
  t.after(async () => {
    const redis = await connectRedis({ url: redisUrl, keyPrefix: "" });
    const keys = await redis.keys(`${prefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await closeRedis(redis);
  });
  return { REDIS_URL: redisUrl, REDIS_KEY_PREFIX: prefix };
}

/** Every page of the list, following Link headers, as the client sees it. */
async function listing(app: TestApp["app"], key: string): Promise<unknown[]> {
  const all: unknown[] = [];
  let url: string | undefined = "/image/?limit=3";
  while (url) {
    const response: LightMyRequestResponse = await app.inject({ method: "GET", url, headers: auth(key) });
    assert.equal(response.statusCode, 200, response.body);
    all.push(...response.json<unknown[]>());
    const next = /<([^>]+)>;\s*rel="next"/.exec(String(response.headers.link ?? ""));
    url = next?.[1] ? new URL(next[1], "http://localhost").pathname + new URL(next[1], "http://localhost").search : undefined;
  }
  return all;
}

async function assertServesTheSame(source: TestApp, target: TestApp, keys: string[]): Promise<void> {
  for (const key of keys) {
    const before = await listing(source.app, key);
    const after = await listing(target.app, key);
    assert.deepEqual(after, before, "identical listings, pages and all");
    for (const image of before as Array<{ name: string }>) {
      const url = `/image/${encodeURIComponent(image.name)}/`;
      const original = await source.app.inject({ method: "GET", url, headers: auth(key) });
      const migrated = await target.app.inject({ method: "GET", url, headers: auth(key) });
      assert.equal(migrated.statusCode, 200, `${image.name}: ${migrated.body}`);
      assert.ok(migrated.rawPayload.equals(original.rawPayload), `${image.name}: identical bytes`);
      assert.equal(migrated.headers["content-type"], original.headers["content-type"]);
    }
  }
}

function flipByte(bytes: Buffer, at: number): void {
  bytes.writeUInt8(bytes.readUInt8(at) ^ 0xff, at);
}

describe("imgvault migrate-storage", { skip: scaleOutSkipReason }, () => {
  test("copies an embedded instance to PostgreSQL + S3; the scale-out app serves identical listings and bytes to the old keys", async (t) => {
    const source = await embeddedApp(t);
    const ann = await source.userKey("ann");
    const bob = await source.userKey("bob");
    for (const [key, file, name] of [
      [ann, "valid/photo.jpg", "holiday.jpg"],
      [ann, "valid/animated.gif", "dance.gif"],
      [ann, "valid/small.png", "shared.png"],
      [ann, "valid/still.webp", "still.webp"],
      [bob, "valid/small.png", "same-bytes.png"],
      [bob, "valid/three-pages.tiff", "scan.tiff"],
    ] as const) {
      assert.equal((await upload(source.app, key, fixture(file).path, name)).statusCode, 201);
    }
    const renamed = await upload(source.app, ann, fixture("valid/small.jpg").path, "x", { method: "PATCH", url: "/image/still.webp/", fields: { name: "renamed.jpg" } });
    assert.equal(renamed.statusCode, 200, renamed.body);

    // A URL the old instance signed, to be served by the new one.
    const signing = await source.app.inject({ method: "POST", url: "/image/dance.gif/signed-url", headers: auth(ann), payload: { expires_in: 3600 } });
    assert.equal(signing.statusCode, 200, signing.body);
    const signedUrl = new URL(signing.json<{ url: string }>().url);

    const backend = await freshBackend(t);
    const env = { ...backend.env, ...redisEnv(t) };
    const result = await migrate(source, env, "--verify");
    assert.equal(result.code, 0, result.stderr + result.stdout);
    assert.match(result.stdout, /signing keys: copied to Redis/);
    assert.match(result.stdout, /users:\s+2 copied/);
    assert.match(result.stdout, /images:\s+6 copied/);
    assert.match(result.stdout, /blobs:\s+5 copied/, "identical bytes of two users are copied once");
    assert.match(result.stdout, /verified:\s+6 images, \d+ bytes re-read and hashed, 0 repaired, 0 problems/);

    const target = await buildTestApp(t, env);
    assert.equal(target.config.database.kind, "postgres");
    await assertServesTheSame(source, target, [ann, bob]);
    const signed = await target.app.inject({ method: "GET", url: signedUrl.pathname + signedUrl.search });
    assert.equal(signed.statusCode, 200, `a URL signed before the migration still works: ${signed.body}`);
    assert.ok(signed.rawPayload.equals(await readFile(fixture("valid/animated.gif").path)));
    // New rows are numbered after the copied ones (ids were kept).
    const fresh = await upload(target.app, bob, fixture("valid/alpha.png").path, "after.png");
    assert.equal(fresh.statusCode, 201, fresh.body);
    const newest = (await listing(target.app, bob))[0] as { name: string } | undefined;
    assert.equal(newest?.name, "after.png", "listed first: newest");
  });

  test("running it again copies nothing twice, then converges on what changed in the source since", async (t) => {
    const source = await embeddedApp(t);
    const key = await source.userKey("carol");
    const spare = await source.app.services.accounts.issueKey((await source.app.services.accounts.findUser("carol")).id);
    for (const name of ["a.png", "b.png", "c.png"]) {
      assert.equal((await upload(source.app, key, fixture("valid/small.png").path, name)).statusCode, 201);
    }
    const backend = await freshBackend(t);
    assert.equal((await migrate(source, backend.env)).code, 0);

    const again = await migrate(source, backend.env);
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /users:\s+0 copied, 0 updated, 1 already there/);
    assert.match(again.stdout, /images:\s+0 copied, 0 removed or replaced, 3 already there/);
    assert.match(again.stdout, /blobs:\s+0 copied/);

    // The old instance kept serving meanwhile.
    assert.equal((await source.app.inject({ method: "DELETE", url: "/image/a.png/", headers: auth(key) })).statusCode, 200);
    assert.equal((await upload(source.app, key, fixture("valid/small.jpg").path, "x", { method: "PATCH", url: "/image/b.png/" })).statusCode, 200);
    assert.equal((await upload(source.app, key, fixture("valid/still.gif").path, "d.gif")).statusCode, 201);
    await source.app.services.accounts.revokeKey((await source.app.services.accounts.findUser("carol")).id, spare.row.id);

    const last = await migrate(source, backend.env, "--verify");
    assert.equal(last.code, 0, last.stderr + last.stdout);
    assert.match(last.stdout, /images:\s+2 copied, 2 removed or replaced, 1 already there/);
    const target = await scaleOutApp(t, backend);
    await assertServesTheSame(source, target, [key]);
    const revoked = await target.app.inject({ method: "GET", url: "/image/", headers: auth(spare.key) });
    assert.equal(revoked.statusCode, 401, "a key revoked in the source is revoked in the target");
  });

  test("--verify finds bytes that are wrong in the target and copies them again; corrupt source bytes are never copied", async (t) => {
    const source = await embeddedApp(t);
    const key = await source.userKey("dave");
    const good = (await upload(source.app, key, fixture("valid/small.png").path, "good.png")).json<{ sha256: string }>();
    const backend = await freshBackend(t);
    assert.equal((await migrate(source, backend.env)).code, 0);

    // Damage the target copy of good.png: same key, other bytes of the same length.
    const original = await readFile(fixture("valid/small.png").path);
    const damaged = Buffer.from(original);
    flipByte(damaged, damaged.length - 20);
    const scratch = join(source.dataDir, "damaged.bin");
    await writeFile(scratch, damaged);
    const store = new S3BlobStore(s3StorageConfig(backend.env));
    t.after(() => store.close());
    await store.putFile(scratch, good.sha256, damaged.length);

    const verified = await migrate(source, backend.env, "--verify");
    assert.equal(verified.code, 0, verified.stdout);
    assert.match(verified.stdout, /1 repaired, 0 problems/);
    assert.match(verified.stdout, new RegExp(`REPAIRED ${good.sha256}: its bytes hash to`));
    const chunks: Buffer[] = [];
    for await (const chunk of await store.read(good.sha256)) chunks.push(chunk as Buffer);
    assert.ok(Buffer.concat(chunks).equals(original));

    // Bytes that rotted in the source after their upload: the image is reported and left out,
    // and the bad bytes are never copied.
    const broken = (await upload(source.app, key, fixture("valid/small.jpg").path, "broken.jpg")).json<{ sha256: string }>();
    const sourceFile = join(source.dataDir, "blobs", broken.sha256.slice(0, 2), broken.sha256.slice(2, 4), broken.sha256);
    const sourceBytes = await readFile(sourceFile);
    flipByte(sourceBytes, 100);
    await writeFile(sourceFile, sourceBytes);
    const partial = await migrate(source, backend.env);
    assert.equal(partial.code, 3, partial.stdout + partial.stderr);
    assert.match(partial.stdout, /SKIPPED image \d+ "broken.jpg": bytes corrupt in the source/);
    assert.equal(await store.stat(broken.sha256), undefined, "nothing stored under the hash");
  });

  test("refuses a target that holds users of its own, and a target that is the source itself", async (t) => {
    const source = await embeddedApp(t);
    await source.userKey("erin");
    const backend = await freshBackend(t);
    const other = await scaleOutApp(t, backend);
    await other.userKey("someone-else");
    const refused = await migrate(source, backend.env);
    assert.equal(refused.code, 8);
    assert.match(refused.stderr, /already holds users that did not come from this source: "someone-else"/);

    const itself = await runCli(["migrate-storage", "--from-data-dir", source.dataDir, "--data-dir", source.dataDir], {
      env: { DATABASE_URL: "", STORAGE: "fs", IMGVAULT_TEST_BACKEND: "" },
    });
    assert.equal(itself.code, 1, itself.stderr);
    assert.match(itself.stderr, /is the source itself/);
  });
});
