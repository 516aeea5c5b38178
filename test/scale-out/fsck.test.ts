/**
 * `imgvault fsck` in the scale-out configuration: the real command, configured like the nodes by
 * DATABASE_URL, STORAGE=s3 and S3_*, checks a collection in PostgreSQL and S3, repairs what a
 * crash leaves (untracked objects in the bucket), and names the images whose bytes are gone.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { FsckReport } from "../../src/services/fsck.js";
import { buildTestApp } from "../helpers/app.js";
import { runCli } from "../helpers/cli.js";
import { fixture } from "../helpers/fixtures.js";
import { upload } from "../helpers/http.js";
import { createScaleOutBackend, scaleOutSkipReason } from "../helpers/scale-out.js";

describe("imgvault fsck on PostgreSQL + S3", { skip: scaleOutSkipReason }, () => {
  test("clean collection 0, untracked bucket objects repaired 1, missing bytes named 4", async (t) => {
    const backend = await createScaleOutBackend("fsck");
    t.after(() => backend.dispose());
    const testApp = await buildTestApp(t, backend.env);
    const { services } = testApp.app;
    assert.equal(services.database.dialect, "postgres");
    const key = await testApp.userKey("fsck-s3");
    const stored: Array<{ name: string; sha256: string }> = [];
    for (const [file, name] of [["valid/small.png", "a.png"], ["valid/small.jpg", "b.jpg"], ["valid/animated.gif", "c.gif"]] as const) {
      const response = await upload(testApp.app, key, fixture(file).path, name);
      assert.equal(response.statusCode, 201, response.body);
      stored.push(response.json());
    }
    // The command runs in its own data directory: nothing of the collection is local.
    const ownDataDir = await mkdtemp(join(tmpdir(), "imgvault-fsck-node-"));
    t.after(() => rm(ownDataDir, { recursive: true, force: true }));
    const env = { ...backend.env, IMGVAULT_GC_GRACE_SECONDS: "0", IMGVAULT_TEST_BACKEND: "" };
    const fsck = (...args: string[]) => runCli(["fsck", "--data-dir", ownDataDir, ...args], { env });

    const clean = await fsck();
    assert.equal(clean.code, 0, clean.stderr + clean.stdout);
    assert.match(clean.stdout, /Checked 3 images, 3 blobs \(3 hashed/);
    assert.match(clean.stdout, /s3:/);

    // An upload that crashed after storing its bytes and before its bookkeeping row.
    const orphanPath = fixture("valid/still.webp").path;
    const orphan = createHash("sha256").update(await readFile(orphanPath)).digest("hex");
    await services.blobs.putFile(orphanPath, orphan, (await readFile(orphanPath)).length);
    const repaired = await fsck("--repair");
    assert.equal(repaired.code, 1, repaired.stdout);
    assert.match(repaired.stdout, /untracked_object.*\[repaired\]/);
    assert.equal(await services.blobs.stat(orphan), undefined, "collected from the bucket");
    assert.equal((await fsck()).code, 0);

    // Bytes lost from the bucket: reported with the image, never dropped.
    await services.blobs.delete(stored[1]!.sha256);
    const broken = await fsck("--repair", "--json");
    assert.equal(broken.code, 4, broken.stderr);
    const report = JSON.parse(broken.stdout) as FsckReport;
    assert.deepEqual(report.problems.map((problem) => [problem.kind, problem.images]), [["missing_bytes", [{ username: "fsck-s3", name: "b.jpg" }]]]);
    assert.equal((await services.images.list((await services.accounts.findUser("fsck-s3")).id, {})).images.length, 3);
  });
});
