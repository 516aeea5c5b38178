import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { negotiateFormat } from "../../src/processing/output-format.js";
import { parseTransformParams, variantParams } from "../../src/processing/transform-params.js";
import { transformImage } from "../../src/processing/transform.js";
import { VariantCache, variantKey } from "../../src/services/variant-cache.js";
import { fixture } from "../helpers/fixtures.js";

const sha = (text: string) => createHash("sha256").update(text).digest("hex");
const keyOf = (name: string) => variantKey(sha("source"), `w=${name}`);

/** A compute function that counts its calls and returns `size` bytes naming the key. */
function counter(size = 100) {
  const calls: string[] = [];
  return {
    calls,
    compute: (name: string) => () => {
      calls.push(name);
      return Promise.resolve(Buffer.alloc(size, name));
    },
  };
}

/** A promise the test resolves by hand, to hold a computation open. */
function deferred<T>() {
  let resolve!: (value: T) => void;
  let reject!: (error: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries.filter((entry) => entry.isFile()).map((entry) => entry.name);
}

let dir: string;
beforeEach(async () => {
  dir = join(await mkdtemp(join(tmpdir(), "imgvault-variants-")), "variants");
});
afterEach(async () => {
  await rm(join(dir, ".."), { recursive: true, force: true });
});

void describe("variantKey", () => {
  void test("depends on the source's content hash and the variant's parameters, and nothing else", () => {
    const a = variantKey(sha("one"), "w=300&format=webp");
    assert.match(a, /^[0-9a-f]{64}$/);
    assert.equal(variantKey(sha("one"), "w=300&format=webp"), a);
    assert.notEqual(variantKey(sha("two"), "w=300&format=webp"), a, "a replaced source makes new keys");
    assert.notEqual(variantKey(sha("one"), "w=300&format=avif"), a);
  });
});

void describe("VariantCache", () => {
  void test("computes on a miss, then serves the stored bytes without computing", async () => {
    const cache = await VariantCache.open({ dir, maxBytes: 10_000 });
    const { calls, compute } = counter();
    const first = await cache.getOrCompute(keyOf("a"), compute("a"));
    const second = await cache.getOrCompute(keyOf("a"), compute("a"));
    assert.equal(first.cached, false);
    assert.equal(second.cached, true);
    assert.ok(second.data.equals(first.data));
    assert.deepEqual(calls, ["a"]);
    assert.deepEqual(await filesUnder(dir), [keyOf("a")]);
    assert.equal(cache.bytes, 100);
    await cache.close();
  });

  void test("single flight: identical concurrent requests compute once and all get the result", async () => {
    const cache = await VariantCache.open({ dir, maxBytes: 10_000 });
    const gate = deferred<Buffer>();
    let calls = 0;
    const compute = () => {
      calls += 1;
      return gate.promise;
    };
    const waiting = Array.from({ length: 20 }, () => cache.getOrCompute(keyOf("x"), compute));
    const other = cache.getOrCompute(keyOf("y"), () => Promise.resolve(Buffer.from("y")));
    gate.resolve(Buffer.from("the variant"));
    const results = await Promise.all(waiting);
    assert.equal(calls, 1);
    for (const result of results) assert.equal(result.data.toString(), "the variant");
    assert.equal((await other).data.toString(), "y", "other keys are not held up");
    await cache.close();
  });

  void test("a failed computation is shared by its waiters and not cached", async () => {
    const cache = await VariantCache.open({ dir, maxBytes: 10_000 });
    const gate = deferred<Buffer>();
    let calls = 0;
    const failing = () => {
      calls += 1;
      return gate.promise;
    };
    const waiting = [cache.getOrCompute(keyOf("f"), failing), cache.getOrCompute(keyOf("f"), failing)];
    gate.reject(new Error("encoder failed"));
    for (const result of waiting) await assert.rejects(result, /encoder failed/);
    assert.equal(calls, 1);
    const retry = await cache.getOrCompute(keyOf("f"), () => Promise.resolve(Buffer.from("fine")));
    assert.equal(retry.cached, false);
    assert.equal(retry.data.toString(), "fine");
    await cache.close();
  });

  void test("evicts the least recently used beyond the byte cap, deleting its file", async () => {
    const cache = await VariantCache.open({ dir, maxBytes: 300 });
    const { calls, compute } = counter(100);
    for (const name of ["a", "b", "c"]) await cache.getOrCompute(keyOf(name), compute(name));
    await cache.getOrCompute(keyOf("a"), compute("a")); // a is now the most recent
    await cache.getOrCompute(keyOf("d"), compute("d")); // 400 bytes: b, the least recent, goes
    assert.deepEqual(cache.keys(), [keyOf("c"), keyOf("a"), keyOf("d")]);
    assert.equal(cache.bytes, 300);
    await cache.getOrCompute(keyOf("e"), compute("e")); // then c
    assert.deepEqual(cache.keys(), [keyOf("a"), keyOf("d"), keyOf("e")]);
    await cache.close();
    assert.deepEqual((await filesUnder(dir)).filter((name) => name !== "clean-shutdown").sort(), [keyOf("a"), keyOf("d"), keyOf("e")].sort());
    assert.deepEqual(calls, ["a", "b", "c", "d", "e"]);
    const again = await VariantCache.open({ dir, maxBytes: 300 });
    assert.equal((await again.getOrCompute(keyOf("b"), compute("b"))).cached, false, "b was evicted: computed again");
    await again.close();
  });

  void test("a variant bigger than the whole cap is returned but not stored; a cap of 0 stores nothing", async () => {
    const cache = await VariantCache.open({ dir, maxBytes: 50 });
    const { calls, compute } = counter(100);
    assert.equal((await cache.getOrCompute(keyOf("big"), compute("big"))).data.length, 100);
    assert.equal((await cache.getOrCompute(keyOf("big"), compute("big"))).cached, false);
    assert.equal(calls.length, 2);
    assert.equal(cache.size, 0);
    await cache.close();

    const off = await VariantCache.open({ dir, maxBytes: 0 });
    await off.getOrCompute(keyOf("tiny"), () => Promise.resolve(Buffer.from("t")));
    assert.equal(off.size, 0);
    await off.close();
  });

  void test("reopened after a clean close: the index is rebuilt from disk in recency order", async () => {
    const cache = await VariantCache.open({ dir, maxBytes: 10_000 });
    const { compute } = counter(100);
    for (const name of ["a", "b", "c"]) await cache.getOrCompute(keyOf(name), compute(name));
    await cache.close();

    const reopened = await VariantCache.open({ dir, maxBytes: 10_000 });
    assert.deepEqual(reopened.keys(), [keyOf("a"), keyOf("b"), keyOf("c")]);
    assert.equal(reopened.bytes, 300);
    const { calls, compute: recompute } = counter(100);
    const hit = await reopened.getOrCompute(keyOf("b"), recompute("b"));
    assert.equal(hit.cached, true);
    assert.ok(hit.data.equals(Buffer.alloc(100, "b")));
    assert.deepEqual(calls, []);
    await reopened.close();
  });

  void test("reopened with a smaller cap: the oldest go first", async () => {
    const cache = await VariantCache.open({ dir, maxBytes: 10_000 });
    const { compute } = counter(100);
    for (const name of ["a", "b", "c"]) await cache.getOrCompute(keyOf(name), compute(name));
    await cache.close();
    const smaller = await VariantCache.open({ dir, maxBytes: 150 });
    assert.deepEqual(smaller.keys(), [keyOf("c")]);
    await smaller.close();
    assert.deepEqual((await filesUnder(dir)).filter((name) => name !== "clean-shutdown"), [keyOf("c")]);
  });

  void test("reopened after a crash (never closed): starts empty rather than trust unsynced files", async () => {
    const cache = await VariantCache.open({ dir, maxBytes: 10_000 });
    const { compute } = counter(100);
    for (const name of ["a", "b"]) await cache.getOrCompute(keyOf(name), compute(name));
    // A half-written file from the crash, and one truncated after its rename.
    await writeFile(join(dir, "tmp", `${keyOf("c")}.partial`), "half");
    await writeFile(join(dir, keyOf("a").slice(0, 2), keyOf("a")), "");

    const afterCrash = await VariantCache.open({ dir, maxBytes: 10_000 });
    assert.equal(afterCrash.size, 0);
    assert.deepEqual(await filesUnder(dir), []);
    const { calls, compute: recompute } = counter(100);
    assert.equal((await afterCrash.getOrCompute(keyOf("a"), recompute("a"))).data.length, 100);
    assert.deepEqual(calls, ["a"]);
    await afterCrash.close();
  });

  void test("ignores files that are not variants, and survives variants deleted behind its back", async () => {
    const cache = await VariantCache.open({ dir, maxBytes: 10_000 });
    const { calls, compute } = counter(100);
    await cache.getOrCompute(keyOf("a"), compute("a"));
    await cache.close();
    await mkdir(join(dir, "zz"), { recursive: true });
    await writeFile(join(dir, "notes.txt"), "mine");
    await writeFile(join(dir, keyOf("a").slice(0, 2), "not-a-key"), "x");

    const reopened = await VariantCache.open({ dir, maxBytes: 10_000 });
    assert.deepEqual(reopened.keys(), [keyOf("a")]);
    await unlink(join(dir, keyOf("a").slice(0, 2), keyOf("a")));
    const result = await reopened.getOrCompute(keyOf("a"), compute("a"));
    assert.equal(result.cached, false);
    assert.deepEqual(calls, ["a", "a"]);
    assert.equal((await stat(join(dir, keyOf("a").slice(0, 2), keyOf("a")))).size, 100);
    await reopened.close();
  });

  void test("refuses keys that are not SHA-256 hex, so no key can name a path", async () => {
    const cache = await VariantCache.open({ dir, maxBytes: 10_000 });
    assert.throws(() => cache.getOrCompute("../../etc/passwd", () => Promise.resolve(Buffer.alloc(1))), TypeError);
    await cache.close();
  });

  void test("end to end: a real transform cached under its variant key; a replaced source gets a fresh variant", async () => {
    const cache = await VariantCache.open({ dir, maxBytes: 10_000_000 });
    const path = fixture("valid/small.jpg").path;
    const bytes = await readFile(path);
    const source = { format: "jpeg" as const, width: 128, height: 96, pages: 1, hasAlpha: false };
    const spec = parseTransformParams({ w: "64", format: "auto" });
    const { format } = negotiateFormat(spec.format, source, "image/webp");
    const options = { limitInputPixels: 1e8, maxOutputPixels: 1e7, effort: { avif: 1, webp: 4, gif: 4 } };
    let transforms = 0;
    const compute = () => {
      transforms += 1;
      return transformImage(path, source, spec, format, options).then((result) => result.data);
    };
    const key = variantKey(sha(bytes.toString("latin1")), variantParams(spec, format));
    const cold = await cache.getOrCompute(key, compute);
    const warm = await cache.getOrCompute(key, compute);
    assert.equal(transforms, 1);
    assert.ok(warm.cached && warm.data.equals(cold.data));
    assert.ok(warm.data.subarray(8, 12).equals(Buffer.from("WEBP")));
    const replacedKey = variantKey(sha("other bytes"), variantParams(spec, format));
    assert.equal((await cache.getOrCompute(replacedKey, compute)).cached, false);
    assert.equal(transforms, 2);
    assert.ok((await readFile(join(dir, key.slice(0, 2), key))).equals(cold.data));
    await cache.close();
  });
});
