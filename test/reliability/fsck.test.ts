import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, readFile, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { sql } from "kysely";
import { BlobsRepository } from "../../src/db/repositories/blobs.js";
import { fsck, type FsckProblemKind, type FsckReport } from "../../src/services/fsck.js";
import { createServices, type Services } from "../../src/services/index.js";
import { buildTestApp, type TestApp } from "../helpers/app.js";
import { runCli } from "../helpers/cli.js";
import { fixture } from "../helpers/fixtures.js";
import { upload } from "../helpers/http.js";

interface Stored {
  name: string;
  sha256: string;
}

async function store(testApp: TestApp, key: string, fixtureName: string, name: string): Promise<Stored> {
  const response = await upload(testApp.app, key, fixture(fixtureName).path, name);
  assert.equal(response.statusCode, 201, response.body);
  return response.json<Stored>();
}

function kinds(report: FsckReport): FsckProblemKind[] {
  return report.problems.map((problem) => problem.kind).sort();
}

const hourAhead = () => new Date(Date.now() + 3_600_000);

describe("fsck", () => {
  test("a healthy collection is clean: every image checked, every referenced blob hashed", async (t) => {
    const testApp = await buildTestApp(t);
    const key = await testApp.userKey();
    await store(testApp, key, "valid/small.png", "a.png");
    await store(testApp, key, "valid/small.png", "b.png"); // same bytes: one blob
    await store(testApp, key, "valid/photo.jpg", "c.jpg");

    const report = await fsck(testApp.app.services);
    assert.deepEqual(report.problems, []);
    assert.equal(report.clean, true);
    assert.equal(report.checked.images, 3);
    assert.equal(report.checked.blobRows, 2);
    assert.equal(report.checked.storedObjects, 2);
    assert.equal(report.checked.blobsHashed, 2);
    const expectedBytes = (await readFile(fixture("valid/small.png").path)).length + (await readFile(fixture("valid/photo.jpg").path)).length;
    assert.equal(report.checked.bytesHashed, expectedBytes);
  });

  test("missing and corrupt bytes are reported with the images they break, and repair never drops those rows", async (t) => {
    const testApp = await buildTestApp(t);
    const { services } = testApp.app;
    const key = await testApp.userKey("fsck-owner");
    const lost = await store(testApp, key, "valid/small.png", "lost.png");
    const damaged = await store(testApp, key, "valid/small.jpg", "damaged.jpg");
    const fine = await store(testApp, key, "valid/still.webp", "fine.webp");

    await services.blobs.delete(lost.sha256);
    // Same length, other content, under the old name: what bit rot looks like to a content-addressed store.
    const original = await readFile(fixture("valid/small.jpg").path);
    const rotten = Buffer.from(original);
    rotten[rotten.length >> 1]! ^= 0xff;
    const rottenPath = join(testApp.dataDir, "rotten.bin");
    await writeFile(rottenPath, rotten);
    await services.blobs.putFile(rottenPath, damaged.sha256, rotten.length);

    const report = await fsck(services, { repair: true });
    assert.deepEqual(kinds(report), ["corrupt_bytes", "missing_bytes"]);
    assert.equal(report.clean, false);
    const missing = report.problems.find((problem) => problem.kind === "missing_bytes")!;
    assert.deepEqual(missing.images, [{ username: "fsck-owner", name: "lost.png" }]);
    assert.equal(missing.sha256, lost.sha256);
    assert.equal(missing.repaired, false);
    const corrupt = report.problems.find((problem) => problem.kind === "corrupt_bytes")!;
    assert.deepEqual(corrupt.images, [{ username: "fsck-owner", name: "damaged.jpg" }]);

    // The rows are still there for an operator to restore; the healthy image is untouched.
    const listed = await testApp.app.inject({ method: "GET", url: "/image/", headers: { authorization: `Token ${key}` } });
    assert.deepEqual(listed.json<Stored[]>().map((image) => image.name).sort(), ["damaged.jpg", "fine.webp", "lost.png"]);
    const served = await testApp.app.inject({ method: "GET", url: "/image/fine.webp/", headers: { authorization: `Token ${key}` } });
    assert.equal(served.statusCode, 200);
    assert.equal(fine.sha256.length, 64);
  });

  test("--quick checks existence and size without reading the bytes", async (t) => {
    const testApp = await buildTestApp(t);
    const key = await testApp.userKey();
    const image = await store(testApp, key, "valid/small.png", "a.png");
    const report = await fsck(testApp.app.services, { quick: true });
    assert.equal(report.checked.blobsHashed, 0);
    assert.deepEqual(report.problems, []);
    await testApp.app.services.blobs.delete(image.sha256);
    assert.deepEqual(kinds(await fsck(testApp.app.services, { quick: true })), ["missing_bytes"]);
  });

  test("bookkeeping damage is repaired: a missing blob row is recreated, a referenced blob marked deleting is revived", async (t) => {
    const testApp = await buildTestApp(t);
    const { services } = testApp.app;
    const key = await testApp.userKey();
    const first = await store(testApp, key, "valid/small.png", "a.png");
    const second = await store(testApp, key, "valid/small.jpg", "b.jpg");
    const { db } = services.database;
    // The schema forbids this (images reference blobs), so only a bypassed constraint or a hand edit gets here.
    await db.connection().execute(async (connection) => {
      const sqlite = services.database.dialect === "sqlite";
      await sql.raw(sqlite ? "pragma foreign_keys = off" : "set session_replication_role = replica").execute(connection);
      await connection.deleteFrom("blobs").where("sha256", "=", first.sha256).execute();
      await sql.raw(sqlite ? "pragma foreign_keys = on" : "set session_replication_role = default").execute(connection);
    });
    await db.updateTable("blobs").set({ state: "deleting" }).where("sha256", "=", second.sha256).execute();

    const found = await fsck(services);
    assert.deepEqual(kinds(found), ["missing_blob_row", "referenced_blob_deleting"]);
    assert.equal(found.clean, false);
    const repaired = await fsck(services, { repair: true });
    assert.ok(repaired.problems.every((problem) => problem.repaired));
    assert.equal(repaired.clean, true);
    const after = await fsck(services);
    assert.deepEqual(after.problems, []);
    const rows = await db.selectFrom("blobs").select(["sha256", "state"]).orderBy("sha256").execute();
    assert.deepEqual(rows, [first.sha256, second.sha256].sort().map((sha256) => ({ sha256, state: "live" })));
  });

  test("orphans past the grace period are collected; younger ones are left to the uploads that may own them", async (t) => {
    const testApp = await buildTestApp(t, { IMGVAULT_GC_GRACE_SECONDS: "600", IMGVAULT_GC_INTERVAL_SECONDS: "0" });
    const { services } = testApp.app;
    const key = await testApp.userKey();
    const kept = await store(testApp, key, "valid/small.png", "kept.png");
    const released = await store(testApp, key, "valid/small.jpg", "released.jpg");
    const deleted = await testApp.app.inject({ method: "DELETE", url: "/image/released.jpg/", headers: { authorization: `Token ${key}` } });
    assert.equal(deleted.statusCode, 200);
    // Bytes in the store that no row tracks (as if a row was lost), and a row whose bytes never arrived.
    const untrackedPath = join(testApp.dataDir, "untracked.gif");
    await writeFile(untrackedPath, await readFile(fixture("valid/still.gif").path));
    const untracked = (await readFile(untrackedPath)).length;
    const untrackedSha = await sha256Of(untrackedPath);
    await services.blobs.putFile(untrackedPath, untrackedSha, untracked);
    const ghostSha = "0".repeat(64);
    await new BlobsRepository(services.database.db).touch(ghostSha, 123, new Date().toISOString());

    const now = await fsck(services, { repair: true });
    assert.deepEqual(kinds(now), ["untracked_object"], "only the untracked bytes are a problem within the grace period");
    assert.equal(now.inFlight.unreferencedBlobs, 2, "the released blob and the ghost row are younger than the grace period");
    assert.ok((await services.blobs.stat(released.sha256)) !== undefined, "young orphans are not collected");
    assert.ok((await services.blobs.stat(untrackedSha)) !== undefined, "adopted bytes wait out the grace period too");

    const later = await fsck({ ...services, clock: hourAhead }, { repair: false });
    assert.deepEqual(kinds(later), ["orphan_blob", "orphan_blob", "orphan_blob"]);

    // The collector's own clock decides what it removes, so repair runs on services an hour ahead.
    const ahead = await reopenWithClock(testApp, hourAhead, t);
    const repaired = await fsck(ahead, { repair: true });
    assert.deepEqual(kinds(repaired), ["orphan_blob", "orphan_blob", "orphan_blob"]);
    assert.equal(repaired.clean, true);
    assert.equal(await services.blobs.stat(released.sha256), undefined);
    assert.equal(await services.blobs.stat(untrackedSha), undefined);
    assert.ok((await services.blobs.stat(kept.sha256)) !== undefined, "referenced bytes are never collected");
    assert.deepEqual((await fsck(ahead)).problems, []);
  });

  test("a collection that stopped half-way is finished", async (t) => {
    const testApp = await buildTestApp(t);
    const { services } = testApp.app;
    const key = await testApp.userKey();
    const image = await store(testApp, key, "valid/small.png", "a.png");
    const { db } = services.database;
    await db.deleteFrom("images").execute();
    await db.updateTable("blobs").set({ state: "deleting" }).where("sha256", "=", image.sha256).execute();

    const report = await fsck(services, { repair: true });
    assert.deepEqual(kinds(report), ["stuck_deleting"]);
    assert.equal(report.clean, true);
    assert.equal(await services.blobs.stat(image.sha256), undefined);
    assert.equal((await db.selectFrom("blobs").select(sql<number>`count(*)`.as("n")).executeTakeFirstOrThrow()).n, 0);
  });

  test("temporary files of a crash are removed once older than the grace period, never younger", async (t) => {
    const testApp = await buildTestApp(t, { IMGVAULT_GC_GRACE_SECONDS: "600", STORAGE: "fs" });
    const { services } = testApp.app;
    const staged = join(services.staging.dir, "upload-0123456789abcdef01234567");
    await writeFile(staged, "half an upload");
    assert.equal(services.config.storage.kind, "fs");
    const blobDir = services.config.storage.kind === "fs" ? services.config.storage.dir : "";
    await mkdir(join(blobDir, "ab", "cd"), { recursive: true });
    const halfBlob = join(blobDir, "ab", "cd", `abcd${"0".repeat(60)}.a1b2c3d4e5f6.tmp`);
    await writeFile(halfBlob, "half a blob");

    const young = await fsck(services, { repair: true });
    assert.deepEqual(young.problems, []);
    assert.equal(young.inFlight.tempFiles, 2);
    assert.equal(young.checked.tempFiles, 2);

    const old = await fsck({ ...services, clock: hourAhead }, { repair: true });
    assert.deepEqual(kinds(old), ["temp_file", "temp_file"]);
    assert.deepEqual(old.problems.map((problem) => problem.path).sort(), [halfBlob, staged].sort());
    assert.equal(old.clean, true);
    assert.deepEqual(await readdir(services.staging.dir), []);
    assert.deepEqual(await readdir(join(blobDir, "ab", "cd")), []);
  });

  test("repairing beside live uploads, replacements and deletes loses nothing", async (t) => {
    const testApp = await buildTestApp(t, { IMGVAULT_GC_GRACE_SECONDS: "600", IMGVAULT_MAX_CONCURRENT_UPLOADS_PER_KEY: "0" });
    const { services } = testApp.app;
    const key = await testApp.userKey();
    const files = ["valid/small.png", "valid/small.jpg", "valid/still.webp", "valid/alpha.png", "valid/still.gif"];
    let stop = false;
    const repairs: FsckReport[] = [];
    const checker = (async () => {
      while (!stop) repairs.push(await fsck(services, { repair: true }));
    })();
    for (let round = 0; round < 6; round += 1) {
      await Promise.all(
        files.map(async (_file, index) => {
          const name = `img-${index}.png`;
          const method = round === 0 ? "POST" : "PATCH";
          const url = round === 0 ? "/image/" : `/image/${name}/`;
          const response = await upload(testApp.app, key, fixture(files[(index + round) % files.length]!).path, name, { method, url });
          assert.equal(response.statusCode, round === 0 ? 201 : 200, response.body);
        }),
      );
    }
    await testApp.app.inject({ method: "DELETE", url: "/image/img-0.png/", headers: { authorization: `Token ${key}` } });
    stop = true;
    await checker;
    assert.ok(repairs.length > 0);
    for (const report of repairs) assert.deepEqual(report.problems, [], "nothing in flight is ever a problem");
    for (let index = 1; index < files.length; index += 1) {
      const served = await testApp.app.inject({ method: "GET", url: `/image/img-${index}.png/`, headers: { authorization: `Token ${key}` } });
      assert.equal(served.statusCode, 200);
      assert.ok(served.rawPayload.equals(await readFile(fixture(files[(index + 5) % files.length]!).path)));
    }
    assert.deepEqual((await fsck(services)).problems, []);
  });
});

describe("imgvault fsck command", () => {
  test("exit 0 when clean, 4 with missing bytes (named, kept), 1 after repairing leftovers", async (t) => {
    const testApp = await buildTestApp(t, { STORAGE: "fs" });
    const key = await testApp.userKey("cli-owner");
    const lost = await store(testApp, key, "valid/small.png", "lost.png");
    await store(testApp, key, "valid/small.jpg", "kept.jpg");
    const args = ["--data-dir", testApp.dataDir];
    // The command reads the same configuration as the server: the same database when a test run uses PostgreSQL.
    const { database } = testApp.config;
    const env: Record<string, string> = { IMGVAULT_GC_GRACE_SECONDS: "0", STORAGE: "fs", ...(database.kind === "postgres" ? { DATABASE_URL: database.url } : {}) };

    const clean = await runCli(["fsck", ...args], { env });
    assert.equal(clean.code, 0, clean.stderr + clean.stdout);
    assert.match(clean.stdout, /Checked 2 images, 2 blobs/);
    assert.match(clean.stdout, /No problems found/);

    await writeFile(join(testApp.app.services.staging.dir, "upload-feedfacefeedfacefeedface"), "crash leftover");
    const repaired = await runCli(["fsck", "--repair", ...args], { env });
    assert.equal(repaired.code, 1, repaired.stdout);
    assert.match(repaired.stdout, /temp_file.*\[repaired\]/);
    assert.equal((await runCli(["fsck", ...args], { env })).code, 0);

    await testApp.app.services.blobs.delete(lost.sha256);
    const broken = await runCli(["fsck", "--repair", "--json", ...args], { env });
    assert.equal(broken.code, 4);
    const report = JSON.parse(broken.stdout) as FsckReport;
    assert.equal(report.clean, false);
    assert.deepEqual(report.problems.map((problem) => [problem.kind, problem.images, problem.repaired]), [
      ["missing_bytes", [{ username: "cli-owner", name: "lost.png" }], false],
    ]);
    const listed = await testApp.app.inject({ method: "GET", url: "/image/", headers: { authorization: `Token ${key}` } });
    assert.equal(listed.json<Stored[]>().length, 2, "the broken image is reported, not dropped");
  });
});

async function sha256Of(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

/** Services over the same data as `testApp`, with another clock (the collector judges age by it). */
async function reopenWithClock(testApp: TestApp, clock: () => Date, t: { after(fn: () => Promise<void>): void }): Promise<Services> {
  const services = await createServices(testApp.config, { clock });
  t.after(() => services.close());
  return services;
}
