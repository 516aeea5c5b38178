/**
 * Correctness across nodes, on the real engines: two "nodes" (two sets of services, each with its
 * own PostgreSQL pool, S3 client, staging area and caches) share one PostgreSQL database and one
 * S3 prefix. Races are driven through the services' hooks, so each interleaving is the same on
 * every run; the outcome is checked against the database and the bucket, not against timing.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import { loadConfig } from "../../src/config.js";
import { isAppError } from "../../src/errors.js";
import type { ImagesServiceHooks } from "../../src/services/images.js";
import { createServices, type Services } from "../../src/services/index.js";
import { fixture } from "../helpers/fixtures.js";
import { createScaleOutBackend, scaleOutSkipReason, type ScaleOutBackend } from "../helpers/scale-out.js";

const png = fixture("valid/small.png").path;
const jpeg = fixture("valid/small.jpg").path;

interface Node {
  services: Services;
  upload(userId: number, name: string, path: string): ReturnType<Services["images"]["create"]>;
  replace(userId: number, name: string, path: string): ReturnType<Services["images"]["update"]>;
}

async function startNode(t: TestContext, backend: ScaleOutBackend, hooks?: ImagesServiceHooks): Promise<Node> {
  const dataDir = await mkdtemp(join(tmpdir(), "imgvault-node-"));
  // Grace 0: nothing but the protocol itself protects an upload from a collector.
  const config = loadConfig({ IMGVAULT_DATA_DIR: dataDir, IMGVAULT_GC_GRACE_SECONDS: "0", IMGVAULT_HOT_CACHE_BYTES: "0", ...backend.env });
  const services = await createServices(config, { imageHooks: hooks });
  t.after(async () => {
    await services.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  const stage = (path: string) => services.staging.stage(createReadStream(path));
  return {
    services,
    async upload(userId, name, path) {
      const staged = await stage(path);
      try {
        return await services.images.create(userId, name, staged);
      } finally {
        await staged.dispose();
      }
    },
    async replace(userId, name, path) {
      const staged = await stage(path);
      try {
        return await services.images.update(userId, name, { staged });
      } finally {
        await staged.dispose();
      }
    },
  };
}

async function sha256Of(path: string): Promise<string> {
  return createHash("sha256").update(await readFile(path)).digest("hex");
}

async function readImage(node: Node, userId: number, name: string): Promise<Buffer> {
  const row = await node.services.images.find(userId, name);
  const body = await node.services.images.openContent(row);
  if (body.kind === "buffer") return body.bytes;
  const chunks: Buffer[] = [];
  for await (const chunk of body.stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * The invariant collection must keep: every image row's bytes exist in the bucket with the
 * right size, and their bookkeeping row is live.
 */
async function assertEveryImageHasItsBytes(node: Node): Promise<void> {
  const { db } = node.services.database;
  const rows = await db
    .selectFrom("images")
    .leftJoin("blobs", "blobs.sha256", "images.sha256")
    .select(["images.name", "images.sha256", "images.bytes", "blobs.state"])
    .execute();
  for (const row of rows) {
    assert.equal(row.state, "live", `${row.name}: its blob row is live`);
    const info = await node.services.blobs.stat(row.sha256);
    assert.equal(info?.size, row.bytes, `${row.name}: its bytes are in the store`);
  }
}

/** A promise with its resolver outside, for handing control between the two nodes. */
function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve = () => {};
  const promise = new Promise<void>((done) => (resolve = done));
  return { promise, resolve };
}

/** A fresh database and S3 prefix for one test, removed after it (after its nodes are closed). */
async function freshBackend(t: TestContext): Promise<ScaleOutBackend> {
  const backend = await createScaleOutBackend("cross-node");
  t.after(() => backend.dispose());
  return backend;
}

describe("two nodes over one PostgreSQL database and one S3 prefix", { skip: scaleOutSkipReason }, () => {
  let userCounter = 0;
  async function newUser(node: Node): Promise<number> {
    return (await node.services.accounts.ensureUser(`node-user-${++userCounter}`, "correct horse battery staple")).user.id;
  }

  test("a collector on another node running between an upload's store and its commit cannot lose the upload's bytes", async (t) => {
    const backend = await freshBackend(t);
    const collector = await startNode(t, backend);
    let collectedMeanwhile: boolean | undefined;
    const uploader = await startNode(t, backend, {
      // The worst moment: bytes stored and claimed, no image references them yet, grace 0.
      beforeCommit: async (sha256) => {
        if (collectedMeanwhile === undefined) collectedMeanwhile = await collector.services.images.collect(sha256);
      },
    });
    const userId = await newUser(uploader);
    const image = await uploader.upload(userId, "raced.png", png);
    assert.equal(collectedMeanwhile, true, "the collector did remove the unreferenced bytes");
    assert.equal(image.sha256, await sha256Of(png));
    assert.ok((await readImage(collector, userId, "raced.png")).equals(await readFile(png)), "the other node serves the bytes");
    await assertEveryImageHasItsBytes(collector);
  });

  test("an upload whose bytes another node is removing waits for the removal, then stores them afresh", async (t) => {
    const backend = await freshBackend(t);
    const marked = signal();
    const proceed = signal();
    const collector = await startNode(t, backend, {
      // Hold the collection between marking the blob and removing its bytes ...
      afterMarkedDeleting: async () => {
        marked.resolve();
        await proceed.promise;
      },
    });
    let collection: Promise<boolean> | undefined;
    const uploader = await startNode(t, backend, {
      beforeCommit: async (sha256) => {
        if (collection) return;
        collection = collector.services.images.collect(sha256);
        await marked.promise;
      },
      // ... until the upload, having failed to commit against a blob marked for removal, waits.
      waitingForCollector: async () => proceed.resolve(),
    });
    const userId = await newUser(uploader);
    const image = await uploader.upload(userId, "new.jpg", jpeg);
    assert.equal(await collection, true, "the collector removed the bytes it had marked");
    assert.equal(image.sha256, await sha256Of(jpeg));
    assert.ok((await readImage(collector, userId, "new.jpg")).equals(await readFile(jpeg)));
    await assertEveryImageHasItsBytes(uploader);
  });

  test("a replacement committing while another node collects the replaced-with bytes keeps them", async (t) => {
    const backend = await freshBackend(t);
    const collector = await startNode(t, backend);
    let race = false;
    const uploader = await startNode(t, backend, {
      beforeCommit: async (sha256) => {
        if (!race) return;
        race = false;
        assert.equal(await collector.services.images.collect(sha256), true);
      },
    });
    const userId = await newUser(uploader);
    await uploader.upload(userId, "photo", png);
    race = true;
    const replaced = await uploader.replace(userId, "photo", jpeg);
    assert.equal(race, false, "the collector ran");
    assert.equal(replaced.sha256, await sha256Of(jpeg));
    assert.ok((await readImage(collector, userId, "photo")).equals(await readFile(jpeg)));
    await collector.services.images.sweep();
    await uploader.services.images.sweep();
    await assertEveryImageHasItsBytes(collector);
    // The replaced bytes were collected: nothing references them any more.
    assert.equal(await collector.services.blobs.stat(await sha256Of(png)), undefined);
  });

  test("both nodes finishing one collection at once remove it once, and a fresh upload of the bytes survives", async (t) => {
    const backend = await freshBackend(t);
    const first = await startNode(t, backend);
    const second = await startNode(t, backend);
    const userId = await newUser(first);
    const image = await first.upload(userId, "short-lived.png", png);
    // Left half-way: marked for removal, bytes still there (a collector that stopped).
    await first.services.database.db.deleteFrom("images").where("id", "=", image.id).execute();
    await first.services.database.db.updateTable("blobs").set({ state: "deleting" }).where("sha256", "=", image.sha256).execute();
    const [a, b] = await Promise.all([first.services.images.sweep(), second.services.images.sweep()]);
    assert.equal(a.collected + b.collected, 1, "one node finished the collection");
    assert.equal(await first.services.blobs.stat(image.sha256), undefined);
    await second.upload(userId, "back.png", png);
    await Promise.all([first.services.images.sweep(), second.services.images.sweep()]);
    assert.ok((await readImage(first, userId, "back.png")).equals(await readFile(png)));
    await assertEveryImageHasItsBytes(first);
  });

  test("creating one name on two nodes at once keeps every upload under distinct names", async (t) => {
    const backend = await freshBackend(t);
    const nodes = [await startNode(t, backend), await startNode(t, backend)];
    const userId = await newUser(nodes[0]!);
    const uploads = Array.from({ length: 10 }, (_, i) => nodes[i % 2]!.upload(userId, "same.png", i % 3 === 0 ? jpeg : png));
    const created = await Promise.all(uploads);
    const names = created.map((image) => image.name);
    assert.equal(new Set(names).size, 10, `distinct names: ${names.join(", ")}`);
    assert.ok(names.includes("same.png"));
    const listed = await nodes[1]!.services.images.list(userId, { limit: 100 });
    assert.deepEqual(listed.images.map((image) => image.name).sort(), [...names].sort());
    await assertEveryImageHasItsBytes(nodes[0]!);
  });

  test("renaming two images to one name on two nodes at once: one wins, the other is told name_taken", async (t) => {
    const backend = await freshBackend(t);
    const nodes = [await startNode(t, backend), await startNode(t, backend)];
    const userId = await newUser(nodes[0]!);
    await nodes[0]!.upload(userId, "a.png", png);
    await nodes[1]!.upload(userId, "b.png", png);
    const results = await Promise.allSettled([
      nodes[0]!.services.images.update(userId, "a.png", { newName: "target.png" }),
      nodes[1]!.services.images.update(userId, "b.png", { newName: "target.png" }),
    ]);
    const won = results.filter((result) => result.status === "fulfilled");
    const lost = results.filter((result) => result.status === "rejected");
    assert.equal(won.length, 1);
    assert.equal(lost.length, 1);
    assert.ok(isAppError(lost[0]!.reason) && lost[0]!.reason.code === "name_taken", String(lost[0]!.reason));
    const names = (await nodes[0]!.services.images.list(userId, { limit: 10 })).images.map((image) => image.name).sort();
    assert.equal(names.length, 2);
    assert.ok(names.includes("target.png"));
  });

  test("replacing on one node while deleting on the other: the image ends deleted or replaced, never dangling", async (t) => {
    const backend = await freshBackend(t);
    const nodes = [await startNode(t, backend), await startNode(t, backend)];
    const userId = await newUser(nodes[0]!);
    for (let round = 0; round < 4; round += 1) {
      const name = `contested-${round}.png`;
      await nodes[0]!.upload(userId, name, png);
      const [replaced, deleted] = await Promise.allSettled([
        nodes[0]!.replace(userId, name, jpeg),
        nodes[1]!.services.images.delete(userId, name),
      ]);
      assert.equal(deleted.status, "fulfilled", "the delete always finds the image");
      const remaining = await nodes[1]!.services.images.find(userId, name).catch(() => undefined);
      if (replaced.status === "fulfilled") {
        // Replaced first, then deleted: the delete answered the replaced image.
        assert.equal(remaining, undefined);
      } else {
        assert.ok(isAppError(replaced.reason) && ["image_not_found", "precondition_failed"].includes(replaced.reason.code), String(replaced.reason));
      }
    }
    await Promise.all(nodes.map((node) => node.services.images.sweep()));
    await assertEveryImageHasItsBytes(nodes[0]!);
    const { db } = nodes[0]!.services.database;
    const blobs = await db.selectFrom("blobs").select("sha256").execute();
    const referenced = new Set((await db.selectFrom("images").select("sha256").execute()).map((row) => row.sha256));
    assert.deepEqual(blobs.filter((row) => !referenced.has(row.sha256)), [], "no unreferenced blob survives a sweep at grace 0");
  });
});
