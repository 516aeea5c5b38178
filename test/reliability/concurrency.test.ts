import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { setTimeout as sleep } from "node:timers/promises";
import { describe, test, type TestContext } from "node:test";
import { fsck } from "../../src/services/fsck.js";
import { auth, buildTestApp, type TestApp } from "../helpers/app.js";
import { FaultyBlobStore } from "../helpers/faulty-blob-store.js";
import { fixture } from "../helpers/fixtures.js";
import { filesUnder, upload } from "../helpers/http.js";
import { join } from "node:path";

interface Version {
  file: string;
  bytes: Buffer;
  sha256: string;
  contentType: string;
}

const versionFiles: Array<[string, string]> = [
  ["valid/small.png", "image/png"],
  ["valid/small.jpg", "image/jpeg"],
  ["valid/still.webp", "image/webp"],
  ["valid/alpha.png", "image/png"],
  ["valid/still.gif", "image/gif"],
  ["valid/photo.jpg", "image/jpeg"],
];

async function loadVersions(): Promise<Version[]> {
  return Promise.all(
    versionFiles.map(async ([file, contentType]) => {
      const bytes = await readFile(fixture(file).path);
      return { file, bytes, sha256: sha256(bytes), contentType };
    }),
  );
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

interface Server extends TestApp {
  url: string;
  key: string;
  headers: Record<string, string>;
}

/** A real listening server (requests interleave as they do in production, not one inject at a time). */
async function listening(t: TestContext, env: Record<string, string> = {}): Promise<Server> {
  const testApp = await buildTestApp(t, { IMGVAULT_MAX_CONCURRENT_UPLOADS_PER_KEY: "0", ...env });
  const url = await testApp.app.listen({ host: "127.0.0.1", port: 0 });
  const key = await testApp.userKey();
  return { ...testApp, url, key, headers: { authorization: `Token ${key}` } };
}

function form(version: Version | undefined, filename: string, fields: Record<string, string> = {}): FormData {
  const body = new FormData();
  for (const [name, value] of Object.entries(fields)) body.append(name, value);
  if (version) body.append("image", new Blob([new Uint8Array(version.bytes)]), filename);
  return body;
}

async function send(server: Server, method: string, path: string, body?: FormData): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(`${server.url}${path}`, { method, headers: server.headers, body });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

/** A GET read to the end: the status, and for 200 the body's hash, its length and the declared length. */
async function read(server: Server, name: string): Promise<{ status: number; sha256?: string; length?: number; declared?: string | null; type?: string | null }> {
  const response = await fetch(`${server.url}/image/${encodeURIComponent(name)}/`, { headers: server.headers });
  const body = Buffer.from(await response.arrayBuffer());
  if (response.status !== 200) return { status: response.status };
  return {
    status: 200,
    sha256: sha256(body),
    length: body.length,
    declared: response.headers.get("content-length"),
    type: response.headers.get("content-type"),
  };
}

const jitter = () => sleep(Math.floor(Math.random() * 15));

async function settledAndClean(server: Server): Promise<void> {
  const deadline = Date.now() + 10_000;
  while ((await filesUnder(join(server.dataDir, "tmp"))).length > 0) {
    assert.ok(Date.now() < deadline, "staged uploads are removed");
    await sleep(20);
  }
  await server.app.services.housekeeping();
  assert.deepEqual((await fsck(server.app.services)).problems, []);
}

describe("concurrent requests on one image", () => {
  for (const [label, env] of [
    ["bytes served from the hot cache", {}],
    ["bytes streamed from storage", { IMGVAULT_HOT_CACHE_BYTES: "0" }],
  ] as const) {
    test(`PATCHes and GETs (${label}): every read is one whole uploaded version, the final state is one of them`, async (t) => {
      const versions = await loadVersions();
      const server = await listening(t, env);
      const byHash = new Map(versions.map((version) => [version.sha256, version]));
      const created = await send(server, "POST", "/image/", form(versions[0], "one.png"));
      assert.equal(created.status, 201);

      const patched: string[] = [];
      const reads: Array<Awaited<ReturnType<typeof read>>> = [];
      await Promise.all([
        ...Array.from({ length: 12 }, async (_, index) => {
          await jitter();
          const version = versions[(index % (versions.length - 1)) + 1]!;
          const response = await send(server, "PATCH", "/image/one.png/", form(version, "one.png"));
          assert.equal(response.status, 200, JSON.stringify(response.json));
          assert.equal(response.json.sha256, version.sha256);
          patched.push(version.sha256);
        }),
        ...Array.from({ length: 60 }, async () => {
          await jitter();
          reads.push(await read(server, "one.png"));
        }),
      ]);
      for (const result of reads) {
        assert.equal(result.status, 200, "an image being replaced is always readable");
        const version = byHash.get(result.sha256!);
        assert.ok(version, "every read is exactly one of the uploaded versions");
        assert.equal(result.type, version.contentType, "the headers describe the same version as the body");
        assert.equal(result.declared, String(result.length));
      }
      const final = await read(server, "one.png");
      assert.ok(patched.includes(final.sha256!), "the final state is one of the replacements");
      const listed = await send(server, "GET", "/image/");
      assert.equal((listed.json as unknown as Array<{ sha256: string }>)[0]!.sha256, final.sha256);
      await settledAndClean(server);
    });
  }

  test("a GET whose bytes are collected by a replacement before it opens them serves the new version, not 404", async (t) => {
    const root = await mkdtemp(join(tmpdir(), "imgvault-slow-"));
    t.after(() => rm(root, { recursive: true, force: true }));
    const store = new FaultyBlobStore(root);
    const testApp = await buildTestApp(t, { IMGVAULT_HOT_CACHE_BYTES: "0" }, { blobs: store });
    const key = await testApp.userKey();
    const [first, second] = [fixture("valid/small.png"), fixture("valid/small.jpg")];
    assert.equal((await upload(testApp.app, key, first.path, "a.png")).statusCode, 201);
    const held = store.holdNextRead();
    const reading = testApp.app.inject({ method: "GET", url: "/image/a.png/", headers: auth(key) });
    await held.reached;
    // Lands while the GET is parked before opening the first version's bytes, and collects them
    // (grace period 0; sweep waits for the replacement's background collection).
    const replaced = await upload(testApp.app, key, second.path, "a.png", { method: "PATCH", url: "/image/a.png/" });
    assert.equal(replaced.statusCode, 200);
    await testApp.app.services.images.sweep();
    held.release();
    const read = await reading;
    assert.equal(await store.stat(sha256(await readFile(first.path))), undefined, "the first version was collected under the reader");
    assert.equal(read.statusCode, 200, read.body);
    assert.equal(read.headers["content-type"], "image/jpeg");
    assert.ok(read.rawPayload.equals(await readFile(second.path)));
  });

  test("POSTs of one name: all succeed under distinct names and none is lost", async (t) => {
    const versions = await loadVersions();
    const server = await listening(t);
    const uploads = Array.from({ length: 16 }, (_, index) => versions[index % versions.length]!);
    const results = await Promise.all(
      uploads.map(async (version) => {
        await jitter();
        const response = await send(server, "POST", "/image/", form(version, "cat.png"));
        assert.equal(response.status, 201, JSON.stringify(response.json));
        assert.equal(response.json.sha256, version.sha256);
        return { name: response.json.name as string, version };
      }),
    );
    const names = results.map((result) => result.name);
    assert.equal(new Set(names).size, uploads.length, `distinct names: ${names.join(", ")}`);
    assert.ok(names.includes("cat.png"));
    for (const name of names) assert.match(name, /^cat(-\d+)?\.png$/);
    const listed = await send(server, "GET", "/image/");
    assert.deepEqual((listed.json as unknown as Array<{ name: string }>).map((image) => image.name).sort(), [...names].sort());
    for (const { name, version } of results) {
      const served = await read(server, name);
      assert.equal(served.sha256, version.sha256, `${name} holds the bytes uploaded as it`);
    }
    await settledAndClean(server);
  });

  test("renames onto one name: exactly one wins, the others get 409 and keep their names", async (t) => {
    const versions = await loadVersions();
    const server = await listening(t);
    const sources = Array.from({ length: 8 }, (_, index) => ({ name: `source-${index}.png`, version: versions[index % versions.length]! }));
    for (const source of sources) assert.equal((await send(server, "POST", "/image/", form(source.version, source.name))).status, 201);

    const outcomes = await Promise.all(
      sources.map(async (source) => {
        await jitter();
        const response = await send(server, "PATCH", `/image/${source.name}/`, form(undefined, "", { name: "target.png" }));
        return { source, ...response };
      }),
    );
    const winners = outcomes.filter((outcome) => outcome.status === 200);
    assert.equal(winners.length, 1, `one winner, got ${outcomes.map((outcome) => outcome.status).join(",")}`);
    for (const loser of outcomes.filter((outcome) => outcome.status !== 200)) {
      assert.equal(loser.status, 409);
      assert.equal((loser.json.error as { code: string }).code, "name_taken");
    }
    const winner = winners[0]!.source;
    const listed = await send(server, "GET", "/image/");
    const expected = sources.filter((source) => source !== winner).map((source) => source.name).concat("target.png");
    assert.deepEqual((listed.json as unknown as Array<{ name: string }>).map((image) => image.name).sort(), expected.sort());
    assert.equal((await read(server, "target.png")).sha256, winner.version.sha256);
    assert.equal((await read(server, winner.name)).status, 404);
  });

  for (const [label, env] of [
    ["hot cache", {}],
    ["streamed", { IMGVAULT_HOT_CACHE_BYTES: "0" }],
  ] as const) {
    test(`DELETEs and GETs (${label}): 200 or 404, never a 5xx, never a partial body; one delete wins`, async (t) => {
      const versions = await loadVersions();
      const server = await listening(t, env);
      for (const [index, version] of versions.entries()) {
        const name = `victim-${index}`;
        assert.equal((await send(server, "POST", "/image/", form(version, name))).status, 201);
        const deletes: number[] = [];
        const reads: Array<Awaited<ReturnType<typeof read>>> = [];
        await Promise.all([
          ...Array.from({ length: 4 }, async () => {
            await jitter();
            deletes.push((await send(server, "DELETE", `/image/${name}/`)).status);
          }),
          ...Array.from({ length: 24 }, async () => {
            await jitter();
            reads.push(await read(server, name));
          }),
        ]);
        assert.deepEqual(deletes.sort(), [200, 404, 404, 404], "exactly one delete deletes");
        for (const result of reads) {
          assert.ok(result.status === 200 || result.status === 404, `status ${result.status}`);
          if (result.status === 200) {
            assert.equal(result.sha256, version.sha256, "a read that succeeds has the whole image");
            assert.equal(result.declared, String(version.bytes.length));
          }
        }
        assert.equal((await read(server, name)).status, 404, "a delete, once acknowledged, stays");
      }
      await settledAndClean(server);
    });
  }
});
