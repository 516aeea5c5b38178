/**
 * Property: whatever bytes are uploaded (random, or a real image mutated), the answer is never a
 * 5xx, and an image is stored only if its bytes decode. Seeded, so a failure replays.
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import fc from "fast-check";
import sharp from "sharp";
import { auth, buildTestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { filesUnder, uploadBytes } from "../helpers/http.js";

const seeds = ["valid/small.jpg", "valid/one-pixel.png", "valid/animated.gif", "valid/still.webp", "valid/still.tiff", "valid/still.avif"];

/** Flips, overwrites, deletes, inserts and truncates bytes of a real image. */
const mutation = fc.oneof(
  fc.record({ kind: fc.constant("overwrite" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat(), length: fc.integer({ min: 1, max: 64 }) }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), bytes: fc.uint8Array({ minLength: 1, maxLength: 64 }) }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
);
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never;

function mutate(source: Buffer, mutations: Mutation[]): Buffer {
  let bytes = Buffer.from(source);
  for (const change of mutations) {
    if (bytes.length === 0) break;
    const at = change.at % bytes.length;
    switch (change.kind) {
      case "overwrite":
        bytes.set(change.bytes.subarray(0, bytes.length - at), at);
        break;
      case "flip":
        bytes[at] = (bytes[at] ?? 0) ^ (1 << change.bit);
        break;
      case "delete":
        bytes = Buffer.concat([bytes.subarray(0, at), bytes.subarray(at + change.length)]);
        break;
      case "insert":
        bytes = Buffer.concat([bytes.subarray(0, at), Buffer.from(change.bytes), bytes.subarray(at)]);
        break;
      case "truncate":
        bytes = bytes.subarray(0, at);
        break;
    }
  }
  return bytes;
}

async function decodes(bytes: Buffer): Promise<boolean> {
  try {
    await sharp(bytes, { pages: -1, failOn: "warning" }).stats();
    return true;
  } catch {
    return false;
  }
}

describe("random and mutated uploads", { timeout: 300_000 }, async () => {
  const sources = await Promise.all(seeds.map(async (name) => ({ name, bytes: await readFile(fixture(name).path) })));
  // Mostly mutations of real images (which reach the decoder), some pure noise, some noise behind a real header.
  const upload = fc.oneof(
    { weight: 6, arbitrary: fc.record({ source: fc.constantFrom(...sources), mutations: fc.array(mutation, { minLength: 1, maxLength: 4 }) }).map(({ source, mutations }) => mutate(source.bytes, mutations)) },
    { weight: 2, arbitrary: fc.uint8Array({ minLength: 0, maxLength: 2048 }).map((bytes) => Buffer.from(bytes)) },
    {
      weight: 2,
      arbitrary: fc
        .record({ source: fc.constantFrom(...sources), cut: fc.integer({ min: 1, max: 64 }), tail: fc.uint8Array({ maxLength: 2048 }) })
        .map(({ source, cut, tail }) => Buffer.concat([source.bytes.subarray(0, cut), Buffer.from(tail)])),
    },
  );

  test("never a 5xx; stored only if the bytes decode; nothing left behind when refused", async (t) => {
    // The default grace period: a deleted image's bytes may be uploaded again at once, which is what it is for.
    const { app, userKey, dataDir } = await buildTestApp(t, { IMGVAULT_GC_GRACE_SECONDS: "600" });
    const key = await userKey();
    const outcomes = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(upload, async (bytes) => {
        const response = await uploadBytes(app, key, { bytes, filename: "fuzz.bin" });
        assert.ok(response.statusCode < 500, `${response.statusCode} ${response.body}`);
        const outcome = response.statusCode === 201 ? "201 stored" : `${response.statusCode} ${response.json<{ error: { code: string } }>().error.code}`;
        outcomes.set(outcome, (outcomes.get(outcome) ?? 0) + 1);
        if (response.statusCode === 201) {
          const name = response.json<{ name: string }>().name;
          const stored = await app.inject({ method: "GET", url: `/image/${encodeURIComponent(name)}/`, headers: auth(key) });
          assert.ok(stored.rawPayload.equals(bytes), "stored byte-for-byte");
          assert.ok(await decodes(stored.rawPayload), "a stored image decodes");
          assert.equal((await app.inject({ method: "DELETE", url: `/image/${encodeURIComponent(name)}/`, headers: auth(key) })).statusCode, 200);
        } else {
          assert.ok([413, 415, 422].includes(response.statusCode), `${response.statusCode} ${response.body}`);
          const list = await app.inject({ method: "GET", url: "/image/", headers: auth(key) });
          assert.equal(list.headers["x-total-count"], "0", "a refused upload stores nothing");
        }
        assert.deepEqual(await filesUnder(join(dataDir, "tmp")), [], "no staged file is left");
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 300), seed: Number(process.env.FUZZ_SEED ?? 20261204), includeErrorInReport: true },
    );
    assert.ok((outcomes.get("201 stored") ?? 0) > 0 || outcomes.size > 1, "the runs reached more than one outcome");
    t.diagnostic(`outcomes: ${JSON.stringify(Object.fromEntries(outcomes))}`);
    assert.equal((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
  });
});
