import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile, appendFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { buildApp } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { backup, BackupError, restore, type BackupManifest } from "../../src/services/backup.js";
import { fsck } from "../../src/services/fsck.js";
import type { BlobStore } from "../../src/storage/blob-store.js";
import { FsBlobStore } from "../../src/storage/fs-blob-store.js";
import { auth, buildTestApp } from "../helpers/app.js";
import { runCli } from "../helpers/cli.js";
import { fixture } from "../helpers/fixtures.js";
import { upload } from "../helpers/http.js";

async function tempDir(t: TestContext, label: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), `imgvault-${label}-`));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe("backup and restore", () => {
  test("a backup of a live instance, restored into a new data directory, serves identical bytes to the same keys", async (t) => {
    const source = await buildTestApp(t, { STORAGE: "fs" });
    if (source.config.database.kind !== "sqlite") {
      t.skip("backup snapshots SQLite; this run uses PostgreSQL");
      return;
    }
    const alice = await source.userKey("backup-alice");
    const bob = await source.userKey("backup-bob");
    const stored: Array<{ key: string; name: string; file: string }> = [
      { key: alice, name: "photo.jpg", file: "valid/photo.jpg" },
      { key: alice, name: "anim.gif", file: "valid/animated.gif" },
      { key: alice, name: "same.png", file: "valid/small.png" },
      { key: bob, name: "same.png", file: "valid/small.png" }, // identical bytes, two users: one blob
      { key: bob, name: "pages.tiff", file: "valid/three-pages.tiff" },
    ];
    for (const image of stored) assert.equal((await upload(source.app, image.key, fixture(image.file).path, image.name)).statusCode, 201);
    assert.equal((await upload(source.app, bob, fixture("valid/still.webp").path, "gone.webp")).statusCode, 201);
    assert.equal((await source.app.inject({ method: "DELETE", url: "/image/gone.webp/", headers: auth(bob) })).statusCode, 200);

    // The source server keeps running: the backup is taken beside it.
    const backupDir = join(await tempDir(t, "backup"), "snapshot");
    const backedUp = await runCli(["backup", backupDir, "--data-dir", source.dataDir]);
    assert.equal(backedUp.code, 0, backedUp.stderr);
    assert.match(backedUp.stdout, /Backed up 5 images \(4 blobs,/);
    const manifest = JSON.parse(await readFile(join(backupDir, "manifest.json"), "utf8")) as BackupManifest;
    assert.equal(manifest.images, 5);
    assert.equal(manifest.blobs, 4);

    const targetDir = await tempDir(t, "restored");
    const restored = await runCli(["restore", backupDir, "--data-dir", targetDir]);
    assert.equal(restored.code, 0, restored.stderr);
    assert.match(restored.stdout, /Restored 5 images \(4 blobs,/);

    const target = await buildApp(loadConfig({ IMGVAULT_DATA_DIR: targetDir, IMGVAULT_GC_GRACE_SECONDS: "0" }), { logger: false });
    t.after(() => target.close());
    for (const image of stored) {
      const served = await target.inject({ method: "GET", url: `/image/${image.name}/`, headers: auth(image.key) });
      assert.equal(served.statusCode, 200, `${image.name}: ${served.body}`);
      assert.ok(served.rawPayload.equals(await readFile(fixture(image.file).path)), `${image.name} is byte-identical`);
    }
    assert.equal((await target.inject({ method: "GET", url: "/image/gone.webp/", headers: auth(bob) })).statusCode, 404);
    const listed = await target.inject({ method: "GET", url: "/image/", headers: auth(alice) });
    const original = await source.app.inject({ method: "GET", url: "/image/", headers: auth(alice) });
    const strip = (body: string) => (JSON.parse(body) as Array<Record<string, unknown>>).map(({ url: _url, ...rest }) => rest);
    assert.deepEqual(strip(listed.body), strip(original.body), "the same metadata, dates and order included");
    assert.deepEqual((await fsck(target.services)).problems, []);

    // A second restore would overwrite a database: refused without --force.
    const again = await runCli(["restore", backupDir, "--data-dir", targetDir]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists; restore into an empty data directory, or stop the server and pass --force/);
  });

  test("images deleted while the backup copies bytes: a fresh snapshot is taken, and the backup holds neither them nor their bytes", async (t) => {
    const source = await buildTestApp(t, { STORAGE: "fs" });
    if (source.config.database.kind !== "sqlite") {
      t.skip("backup snapshots SQLite; this run uses PostgreSQL");
      return;
    }
    const key = await source.userKey();
    for (const [name, file] of [["kept.png", "valid/small.png"], ["doomed.jpg", "valid/small.jpg"]]) {
      assert.equal((await upload(source.app, key, fixture(file!).path, name!)).statusCode, 201);
    }
    const doomed = (await source.app.inject({ method: "GET", url: "/image/", headers: auth(key) }))
      .json<Array<{ name: string; sha256: string }>>()
      .find((image) => image.name === "doomed.jpg")!;
    const { services } = source.app;
    // The store as a backup sees it, with a delete landing just after the first snapshot was taken.
    let deleted = false;
    const racing: BlobStore = Object.create(services.blobs) as BlobStore;
    racing.read = async (sha256, range) => {
      if (sha256 === doomed.sha256 && !deleted) {
        deleted = true;
        assert.equal((await source.app.inject({ method: "DELETE", url: "/image/doomed.jpg/", headers: auth(key) })).statusCode, 200);
        await services.housekeeping(); // its bytes are collected
      }
      return services.blobs.read(sha256, range);
    };
    const dir = join(await tempDir(t, "backup-race"), "b");
    const manifest = await backup({ database: services.database, blobs: racing, clock: services.clock }, dir);
    assert.ok(deleted, "the race happened");
    assert.equal(manifest.images, 1);
    assert.equal(manifest.blobs, 1);
    const copies = new FsBlobStore(join(dir, "blobs"));
    assert.equal(await copies.stat(doomed.sha256), undefined);
  });

  test("refusals: a non-empty target, damaged bytes in a backup, PostgreSQL metadata", async (t) => {
    const source = await buildTestApp(t, { STORAGE: "fs" });
    if (source.config.database.kind !== "sqlite") {
      t.skip("backup snapshots SQLite; this run uses PostgreSQL");
      return;
    }
    const key = await source.userKey();
    const created = await upload(source.app, key, fixture("valid/small.png").path, "a.png");
    const sha256 = created.json<{ sha256: string }>().sha256;
    const { services } = source.app;

    const busy = await tempDir(t, "busy");
    await writeFile(join(busy, "something"), "");
    await assert.rejects(backup(services, busy), (error: unknown) => error instanceof BackupError && /not empty/.test(error.message));

    const dir = join(await tempDir(t, "damaged"), "b");
    await backup(services, dir);
    await appendFile(join(dir, "blobs", sha256.slice(0, 2), sha256.slice(2, 4), sha256), "rot");
    const targetDir = await tempDir(t, "target");
    const config = loadConfig({ IMGVAULT_DATA_DIR: targetDir });
    const store = new FsBlobStore(join(targetDir, "blobs"));
    await assert.rejects(restore(config, store, dir), (error: unknown) => error instanceof BackupError && /damaged/.test(error.message));
    await assert.rejects(readFile(join(targetDir, "imgvault.sqlite")), "no database is written from a damaged backup");

    const postgres = await runCli(["backup", join(busy, "x")], { env: { DATABASE_URL: "postgres://127.0.0.1:1/imgvault" } });
    assert.equal(postgres.code, 2);
    assert.match(postgres.stderr, /pg_dump/);
  });
});
