import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildApp } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { fsck } from "../../src/services/fsck.js";
import { FsBlobStore } from "../../src/storage/fs-blob-store.js";
import { auth, buildTestApp, type TestApp } from "../helpers/app.js";
import { eventually } from "../helpers/eventually.js";
import { FaultyBlobStore } from "../helpers/faulty-blob-store.js";
import { fixture, noiseJpeg } from "../helpers/fixtures.js";
import { assertError, filesUnder, upload } from "../helpers/http.js";

async function faultyApp(t: TestContext, env: Record<string, string> = {}): Promise<TestApp & { store: FaultyBlobStore; key: string }> {
  const root = await mkdtemp(join(tmpdir(), "imgvault-faulty-"));
  t.after(() => rm(root, { recursive: true, force: true }));
  const store = new FaultyBlobStore(root);
  const testApp = await buildTestApp(t, { IMGVAULT_HOT_CACHE_BYTES: "0", ...env }, { blobs: store });
  return { ...testApp, store, key: await testApp.userKey() };
}

/** Waits until the staged files of answered uploads are gone (they are removed as the response goes out). */
async function uploadsSettled(dataDir: string): Promise<void> {
  await eventually(async () => (await filesUnder(join(dataDir, "tmp"))).length === 0, "staged uploads are removed");
}

/** Images whose bytes are missing or damaged, per fsck: must stay empty whatever fails. */
async function brokenImages(app: FastifyInstance): Promise<string[]> {
  const report = await fsck(app.services);
  return report.problems.filter((problem) => problem.kind === "missing_bytes" || problem.kind === "corrupt_bytes").map((problem) => problem.detail);
}

async function names(app: FastifyInstance, key: string): Promise<string[]> {
  const response = await app.inject({ method: "GET", url: "/image/", headers: auth(key) });
  return response.json<Array<{ name: string }>>().map((image) => image.name).sort();
}

describe("storage faults through the BlobStore seam", () => {
  for (const [code, status, errorCode] of [
    ["ENOSPC", 507, "insufficient_storage"],
    ["EIO", 503, "storage_unavailable"],
    ["EACCES", 503, "storage_unavailable"],
  ] as const) {
    test(`${code} while storing an upload: ${status} ${errorCode}, nothing half-stored, and uploads work again once it clears`, async (t) => {
      const { app, store, key, dataDir } = await faultyApp(t);
      store.fail("putFile", code);
      const refused = await upload(app, key, fixture("valid/small.png").path, "cat.png");
      assertError(refused, status, errorCode);
      if (status === 503) assert.ok(refused.headers["retry-after"], "503 carries Retry-After");
      assert.deepEqual(await names(app, key), [], "no image row for bytes that were not stored");
      assert.deepEqual(await filesUnder(join(dataDir, "tmp")), [], "the staged upload is removed");
      assert.deepEqual(await brokenImages(app), []);

      store.heal();
      const stored = await upload(app, key, fixture("valid/small.png").path, "cat.png");
      assert.equal(stored.statusCode, 201, stored.body);
      const served = await app.inject({ method: "GET", url: "/image/cat.png/", headers: auth(key) });
      assert.ok(served.rawPayload.equals(await readFile(fixture("valid/small.png").path)));
      await uploadsSettled(dataDir);
      await app.services.housekeeping();
      assert.deepEqual((await fsck(app.services)).problems, []);
    });
  }

  test("a replacement that cannot be stored leaves the old version whole and served (the original lost it)", async (t) => {
    const { app, store, key } = await faultyApp(t);
    const original = await upload(app, key, fixture("valid/small.png").path, "cat.png");
    assert.equal(original.statusCode, 201);
    store.fail("putFile", "ENOSPC");
    const refused = await upload(app, key, fixture("valid/small.jpg").path, "cat.png", { method: "PATCH", url: "/image/cat.png/" });
    assertError(refused, 507, "insufficient_storage");

    const served = await app.inject({ method: "GET", url: "/image/cat.png/", headers: auth(key) });
    assert.equal(served.statusCode, 200);
    assert.equal(served.headers["content-type"], "image/png");
    assert.ok(served.rawPayload.equals(await readFile(fixture("valid/small.png").path)));
    const listed = await app.inject({ method: "GET", url: "/image/", headers: auth(key) });
    assert.equal(listed.json<Array<{ sha256: string }>>()[0]!.sha256, original.json<{ sha256: string }>().sha256);
    assert.deepEqual(await brokenImages(app), []);

    store.heal();
    const replaced = await upload(app, key, fixture("valid/small.jpg").path, "cat.png", { method: "PATCH", url: "/image/cat.png/" });
    assert.equal(replaced.statusCode, 200, replaced.body);
  });

  for (const [code, errorCode] of [
    ["EIO", "storage_unavailable"],
    ["EACCES", "storage_unavailable"],
  ] as const) {
    test(`${code} while reading: 503 ${errorCode} with Retry-After, then served again once it clears`, async (t) => {
      const { app, store, key } = await faultyApp(t);
      assert.equal((await upload(app, key, fixture("valid/small.jpg").path, "a.jpg")).statusCode, 201);
      store.fail("read", code);
      const refused = await app.inject({ method: "GET", url: "/image/a.jpg/", headers: auth(key) });
      assertError(refused, 503, errorCode);
      assert.ok(refused.headers["retry-after"]);
      store.heal();
      const served = await app.inject({ method: "GET", url: "/image/a.jpg/", headers: auth(key) });
      assert.equal(served.statusCode, 200);
      assert.ok(served.rawPayload.equals(await readFile(fixture("valid/small.jpg").path)));
    });
  }

  test("an I/O error in the middle of a streamed image never passes for a whole image", async (t) => {
    const { app, store, key } = await faultyApp(t);
    const photo = await readFile(fixture("valid/photo.jpg").path);
    assert.equal((await upload(app, key, fixture("valid/photo.jpg").path, "photo.jpg")).statusCode, 201);
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    store.failReadsMidStream(300_000, "EIO");
    const response = await fetch(`${url}/image/photo.jpg/`, { headers: auth(key) });
    if (response.status === 200) {
      assert.equal(response.headers.get("content-length"), String(photo.length));
      await assert.rejects(response.arrayBuffer(), "a body cut short is an error for the client, not a short image");
    } else {
      assert.equal(response.status, 503);
    }
    store.heal();
    const whole = await fetch(`${url}/image/photo.jpg/`, { headers: auth(key) });
    assert.ok(Buffer.from(await whole.arrayBuffer()).equals(photo), "the server keeps serving after the fault");
  });

  test("a store that cannot delete keeps the bytes and their bookkeeping until it can", async (t) => {
    const { app, store, key, dataDir } = await faultyApp(t);
    const created = await upload(app, key, fixture("valid/small.png").path, "a.png");
    const sha256 = created.json<{ sha256: string }>().sha256;
    store.fail("delete", "EIO");
    const deleted = await app.inject({ method: "DELETE", url: "/image/a.png/", headers: auth(key) });
    assert.equal(deleted.statusCode, 200, "deleting the image is a metadata change; collecting the bytes comes after");
    assert.equal((await app.inject({ method: "GET", url: "/image/a.png/", headers: auth(key) })).statusCode, 404);
    await assert.rejects(app.services.housekeeping());
    store.heal();
    await app.services.housekeeping();
    assert.equal(await store.stat(sha256), undefined, "collected once the store works again");
    await uploadsSettled(dataDir);
    assert.deepEqual((await fsck(app.services)).problems, []);
  });
});

/** Mounts a tmpfs of `size` at `dir`; resolves false when this machine does not allow it. */
function mountTmpfs(dir: string, size: string): boolean {
  if (process.platform !== "linux" || process.getuid?.() !== 0) return false;
  return spawnSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "ignore" }).status === 0;
}

const tmpfsSkip = "needs root on Linux to mount a small tmpfs (`mount -t tmpfs -o size=… tmpfs DIR`); skipped here";

describe("a real full disk (small tmpfs)", () => {
  test("blobs on a full filesystem: 507, no half blob, and uploads succeed again once a delete frees space", async (t) => {
    const mountpoint = await mkdtemp(join(tmpdir(), "imgvault-tmpfs-blobs-"));
    if (!mountTmpfs(mountpoint, "1m")) {
      await rm(mountpoint, { recursive: true, force: true });
      t.skip(tmpfsSkip);
      return;
    }
    t.after(async () => {
      spawnSync("umount", ["-l", mountpoint]);
      await rm(mountpoint, { recursive: true, force: true });
    });
    const testApp = await buildTestApp(t, {}, { blobs: new FsBlobStore(mountpoint) });
    const { app } = testApp;
    const key = await testApp.userKey();
    const first = await noiseJpeg(1000, 900);
    const second = await noiseJpeg(1000, 901);
    t.after(() => Promise.all([first.remove(), second.remove()]));

    assert.equal((await upload(app, key, first.path, "first.jpg")).statusCode, 201);
    const refused = await upload(app, key, second.path, "second.jpg");
    assertError(refused, 507, "insufficient_storage");
    assert.deepEqual(await names(app, key), ["first.jpg"]);
    assert.deepEqual(
      (await filesUnder(mountpoint)).filter((path) => path.endsWith(".tmp")),
      [],
      "the half-written copy is removed, so the space it took is free again",
    );
    assert.deepEqual(await filesUnder(join(testApp.dataDir, "tmp")), []);
    assert.deepEqual(await brokenImages(app), []);

    // Space returns: the delete's background collection frees the first image's bytes.
    assert.equal((await app.inject({ method: "DELETE", url: "/image/first.jpg/", headers: auth(key) })).statusCode, 200);
    await eventually(async () => (await filesUnder(mountpoint)).length === 0, "the deleted image's bytes are collected");
    const stored = await upload(app, key, second.path, "second.jpg");
    assert.equal(stored.statusCode, 201, stored.body);
    const served = await app.inject({ method: "GET", url: "/image/second.jpg/", headers: auth(key) });
    assert.ok(served.rawPayload.equals(await readFile(second.path)));
    await uploadsSettled(testApp.dataDir);
    assert.deepEqual((await fsck(app.services)).problems, []);
  });

  test("uploads staged on a full filesystem: 507, and the partial staged file is removed", async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), "imgvault-tmpfs-staging-"));
    const staging = join(dataDir, "tmp");
    await mkdir(staging);
    if (!mountTmpfs(staging, "256k")) {
      await rm(dataDir, { recursive: true, force: true });
      t.skip(tmpfsSkip);
      return;
    }
    const app = await buildApp(loadConfig({ IMGVAULT_DATA_DIR: dataDir, IMGVAULT_GC_GRACE_SECONDS: "0" }), { logger: false });
    t.after(async () => {
      await app.close();
      spawnSync("umount", ["-l", staging]);
      await rm(dataDir, { recursive: true, force: true });
    });
    const { user } = await app.services.accounts.ensureUser("full-disk", "correct horse battery staple");
    const key = (await app.services.accounts.issueKey(user.id)).key;

    const refused = await upload(app, key, fixture("valid/photo.jpg").path, "photo.jpg");
    assertError(refused, 507, "insufficient_storage");
    assert.deepEqual(await readdir(staging), []);
    const small = await upload(app, key, fixture("valid/small.png").path, "small.png");
    assert.equal(small.statusCode, 201, "smaller uploads still fit");
    // A stored upload's staged file is removed as its response goes out, not before.
    await eventually(async () => (await readdir(staging)).length === 0, "the staged file of the stored upload is removed");
  });
});
