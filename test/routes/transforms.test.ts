// Transforms over HTTP: every query parameter checked by decoding the real output, format
// negotiation and Vary, ETags of variants, refusals, the bounded queue, single flight, the
// variant cache (hits, eviction, replaced sources) and the metadata computed at upload.
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test, type TestContext } from "node:test";
import type { LightMyRequestResponse } from "fastify";
import sharp from "sharp";
import { auth, buildTestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { assertError, upload } from "../helpers/http.js";

let dir: string;
/** A 400×300 photo-like JPEG: every fit mode gives a different size from it. */
let landscape: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "imgvault-transforms-"));
  landscape = join(dir, "landscape.jpg");
  await sharp({ create: { width: 400, height: 300, channels: 3, background: "#3080c0", noise: { type: "gaussian", mean: 120, sigma: 40 } } })
    .jpeg({ quality: 85 })
    .toFile(landscape);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** What the output really is, read back from its bytes. */
async function decoded(response: LightMyRequestResponse) {
  assert.equal(response.statusCode, 200, response.body.slice(0, 300));
  const metadata = await sharp(response.rawPayload, { pages: -1 }).metadata();
  const format = metadata.format === "heif" && metadata.compression === "av1" ? "avif" : metadata.format;
  return {
    format,
    width: metadata.width,
    height: metadata.pageHeight ?? metadata.height,
    pages: metadata.pages ?? 1,
    exif: metadata.exif,
    orientation: metadata.orientation,
  };
}

async function setUp(t: TestContext, env: Record<string, string> = {}, files: Record<string, string> = {}) {
  const testApp = await buildTestApp(t, env);
  const key = await testApp.userKey();
  for (const [name, path] of Object.entries({ "landscape.jpg": landscape, ...files })) {
    const created = await upload(testApp.app, key, path, name);
    assert.equal(created.statusCode, 201, created.body);
  }
  const get = (query: string, headers: Record<string, string> = {}, method: "GET" | "HEAD" = "GET", name = "landscape.jpg") =>
    testApp.app.inject({ method, url: `/image/${encodeURIComponent(name)}/?${query}`, headers: { ...auth(key), ...headers } });
  return { ...testApp, key, get, variants: testApp.app.services.variants };
}

describe("transform parameters, checked on the decoded output", () => {
  const sizes: Array<[query: string, width: number, height: number]> = [
    ["w=200", 200, 150],
    ["h=75", 100, 75],
    ["w=200&h=200", 200, 150],
    ["w=200&h=200&fit=inside", 200, 150],
    ["w=200&h=200&fit=cover", 200, 200],
    ["w=200&h=200&fit=contain", 200, 200],
    ["w=200&h=200&fit=fill", 200, 200],
    ["w=200&h=100&fit=outside", 200, 150],
    ["w=800", 400, 300],
    ["w=800&enlarge=1", 800, 600],
    ["w=100&dpr=2", 200, 150],
    ["w=100&dpr=1.5", 150, 113],
  ];
  test("w, h, fit, enlarge and dpr give the sizes they promise", async (t) => {
    const { get } = await setUp(t);
    for (const [query, width, height] of sizes) {
      const real = await decoded(await get(query));
      assert.deepEqual([real.format, real.width, real.height], ["jpeg", width, height], query);
    }
  });

  test("format writes each format with its content type and the extension in the file name", async (t) => {
    const { get } = await setUp(t);
    const types = { jpeg: "image/jpeg", png: "image/png", webp: "image/webp", avif: "image/avif", gif: "image/gif" };
    const extensions = { jpeg: "jpg", png: "png", webp: "webp", avif: "avif", gif: "gif" };
    for (const [format, contentType] of Object.entries(types)) {
      const response = await get(`w=64&format=${format}`);
      const real = await decoded(response);
      assert.deepEqual([real.format, real.width, real.height], [format, 64, 48]);
      assert.equal(response.headers["content-type"], contentType);
      assert.equal(response.headers.vary, undefined, "an explicit format does not depend on Accept");
      assert.match(String(response.headers["content-disposition"]), new RegExp(`filename="landscape\\.${extensions[format as keyof typeof extensions]}"`));
    }
    assert.equal((await decoded(await get("format=jpg"))).format, "jpeg", "jpg names JPEG");
  });

  test("q sets the encoder's quality: q=5 is much smaller than q=95", async (t) => {
    const { get } = await setUp(t);
    for (const format of ["jpeg", "webp"]) {
      const low = await get(`w=300&format=${format}&q=5`);
      const high = await get(`w=300&format=${format}&q=95`);
      assert.equal((await decoded(low)).format, format);
      assert.ok(low.rawPayload.length * 2 < high.rawPayload.length, `${format}: ${low.rawPayload.length} vs ${high.rawPayload.length}`);
    }
  });

  test("the output is oriented from EXIF and carries no EXIF or GPS", async (t) => {
    const { get } = await setUp(t, {}, { "turned.jpg": fixture("valid/exif-orientation6-gps.jpg").path });
    for (const format of ["jpeg", "webp", "png"]) {
      const response = await get(`w=24&format=${format}`, {}, "GET", "turned.jpg");
      const real = await decoded(response);
      assert.deepEqual([real.width, real.height], [24, 32], "stored 64×48 with orientation 6: shown 48×64");
      assert.equal(real.exif, undefined, format);
      assert.ok(real.orientation === undefined || real.orientation === 1);
      assert.equal(response.rawPayload.includes(Buffer.from("GPS")), false);
    }
  });

  test("animated GIF stays animated as GIF and WebP; a still format takes the first frame", async (t) => {
    const { get } = await setUp(t, {}, { "dance.gif": fixture("valid/animated.gif").path });
    for (const format of ["gif", "webp"]) {
      const real = await decoded(await get(`w=24&format=${format}`, {}, "GET", "dance.gif"));
      assert.deepEqual([real.format, real.width, real.height, real.pages], [format, 24, 16, 3]);
    }
    const still = await decoded(await get("w=24&format=png", {}, "GET", "dance.gif"));
    assert.deepEqual([still.format, still.pages], ["png", 1]);
  });

  test("without format the source's format is kept; TIFF becomes JPEG, or PNG when it has alpha", async (t) => {
    const { get } = await setUp(t, {}, { "scan.tiff": fixture("valid/still.tiff").path, "wheel.png": fixture("valid/alpha.png").path });
    assert.equal((await decoded(await get("w=20", {}, "GET", "scan.tiff"))).format, "jpeg", "has_alpha stored at upload: false");
    assert.equal((await decoded(await get("w=20", {}, "GET", "wheel.png"))).format, "png");
  });
});

describe("format=auto", () => {
  test("AVIF, then WebP, then the original's format, from Accept; always Vary: Accept", async (t) => {
    const { get } = await setUp(t);
    const cases: Array<[accept: string | undefined, format: string]> = [
      ["image/avif,image/webp,image/apng,image/*,*/*;q=0.8", "avif"],
      ["image/webp,*/*", "webp"],
      ["image/avif;q=0,image/webp", "webp"],
      ["image/*,*/*;q=0.8", "jpeg"],
      [undefined, "jpeg"],
    ];
    const etags = new Map<string, string>();
    for (const [accept, format] of cases) {
      const response = await get("w=100&format=auto", accept === undefined ? {} : { accept });
      assert.equal((await decoded(response)).format, format, String(accept));
      assert.equal(response.headers.vary, "Accept");
      assert.equal(response.headers["content-type"], `image/${format}`);
      const etag = String(response.headers.etag);
      if (etags.has(format)) assert.equal(etag, etags.get(format), "one format, one variant");
      etags.set(format, etag);
    }
    assert.equal(new Set(etags.values()).size, 3, "each format is its own representation with its own strong ETag");
  });

  test("a 304 for auto also carries Vary: Accept", async (t) => {
    const { get } = await setUp(t);
    const first = await get("w=100&format=auto", { accept: "image/webp" });
    const again = await get("w=100&format=auto", { accept: "image/webp", "if-none-match": String(first.headers.etag) });
    assert.equal(again.statusCode, 304);
    assert.equal(again.headers.vary, "Accept");
  });

  test("an animation is kept animated (WebP, not AVIF)", async (t) => {
    const { get } = await setUp(t, {}, { "dance.gif": fixture("valid/animated.gif").path });
    const real = await decoded(await get("format=auto", { accept: "image/avif,image/webp" }, "GET", "dance.gif"));
    assert.deepEqual([real.format, real.pages], ["webp", 3]);
  });
});

describe("variant ETags and HTTP semantics", () => {
  test("a variant has its own strong ETag, the same for equivalent spellings, another for other parameters", async (t) => {
    const { get } = await setUp(t);
    const original = await get("");
    const a = await get("w=100&format=webp");
    const b = await get("format=webp&w=100&fit=inside&unrelated=1");
    const c = await get("w=101&format=webp");
    assert.match(String(a.headers.etag), /^"[0-9a-f]{64}"$/);
    assert.notEqual(a.headers.etag, original.headers.etag);
    assert.equal(a.headers.etag, b.headers.etag);
    assert.ok(a.rawPayload.equals(b.rawPayload));
    assert.notEqual(a.headers.etag, c.headers.etag);
    assert.equal(a.headers["cache-control"], "private, no-cache");
    assert.equal(a.headers["last-modified"], original.headers["last-modified"]);
  });

  test("If-None-Match with the variant's tag answers 304 without transforming or reading anything", async (t) => {
    const { get, variants } = await setUp(t);
    const first = await get("w=100&format=webp");
    const before = { ...variants.stats };
    const again = await get("w=100&format=webp", { "if-none-match": String(first.headers.etag) });
    assert.equal(again.statusCode, 304);
    assert.equal(again.rawPayload.length, 0);
    assert.deepEqual(variants.stats, before);
    assert.equal((await get("w=100&format=png", { "if-none-match": String(first.headers.etag) })).statusCode, 200, "another variant's tag");
  });

  test("HEAD of a variant gives the length of the GET's body and no body", async (t) => {
    const { get } = await setUp(t);
    const head = await get("w=100&format=webp", {}, "HEAD");
    assert.equal(head.statusCode, 200);
    assert.equal(head.rawPayload.length, 0);
    const body = await get("w=100&format=webp");
    assert.equal(head.headers["content-length"], String(body.rawPayload.length));
    assert.equal(head.headers.etag, body.headers.etag);
    assert.equal(head.headers["content-type"], "image/webp");
  });

  test("ranges of a variant are slices of it", async (t) => {
    const { get } = await setUp(t);
    const whole = await get("w=100&format=webp");
    const size = whole.rawPayload.length;
    const part = await get("w=100&format=webp", { range: "bytes=10-19" });
    assert.equal(part.statusCode, 206);
    assert.equal(part.headers["content-range"], `bytes 10-19/${size}`);
    assert.ok(part.rawPayload.equals(whole.rawPayload.subarray(10, 20)));
    assertError(await get("w=100&format=webp", { range: `bytes=${size}-` }), 416, "range_not_satisfiable");
  });
});

describe("refusals", () => {
  const invalid: Array<[query: string, parameter: string]> = [
    ["w=0", "w"],
    ["w=8193", "w"],
    ["w=abc", "w"],
    ["w=", "w"],
    ["h=-5", "h"],
    ["w=10&fit=stretch", "fit"],
    ["w=10&enlarge=maybe", "enlarge"],
    ["format=bmp", "format"],
    ["q=0", "q"],
    ["q=101", "q"],
    ["w=10&dpr=5", "dpr"],
    ["w=10&dpr=1.234", "dpr"],
  ];
  test("invalid or out-of-range parameters → 400 invalid_parameter naming the parameter", async (t) => {
    const { get } = await setUp(t);
    for (const [query, parameter] of invalid) {
      const response = await get(query);
      assertError(response, 400, "invalid_parameter");
      assert.match(response.json<{ error: { message: string } }>().error.message, new RegExp(`"${parameter}"`), query);
    }
    const repeated = await get("w=10&w=20");
    assert.equal(repeated.statusCode, 400);
    assert.match(repeated.body, /\bw\b/);
  });

  test("an output larger than the configured maximum → 400 output_too_large, before any work", async (t) => {
    const { get, variants } = await setUp(t, { IMGVAULT_MAX_OUTPUT_PIXELS: "50000" });
    assert.equal((await get("w=250")).statusCode, 200, "250×188 is within 50,000 pixels");
    const response = await get("w=300&h=300&fit=fill&enlarge=1");
    assertError(response, 400, "output_too_large");
    assert.match(response.json<{ error: { message: string } }>().error.message, /300×300/);
    assertError(await get("w=4000&enlarge=1"), 400, "output_too_large");
    assert.equal(variants.stats.computed, 1);
  });

  test("a missing image is 404 whatever the parameters; bad parameters are 400 first", async (t) => {
    const { get } = await setUp(t);
    assertError(await get("w=100", {}, "GET", "nothing.jpg"), 404, "image_not_found");
    assertError(await get("w=0", {}, "GET", "nothing.jpg"), 400, "invalid_parameter");
  });
});

describe("bounded work", () => {
  test("when the queue is full a transform answers 503 busy with Retry-After; originals still serve", async (t) => {
    const { app, get } = await setUp(t, { IMGVAULT_IMAGE_CONCURRENCY: "1", IMGVAULT_IMAGE_QUEUE_LIMIT: "0" });
    let release!: () => void;
    const slow = app.services.queue.run(() => new Promise<void>((resolve) => (release = resolve)));
    try {
      const refused = await get("w=100");
      assertError(refused, 503, "busy");
      assert.equal(refused.headers["retry-after"], "1");
      assert.equal(refused.headers["cache-control"], undefined, "no cache may keep a refusal as the image");
      assert.equal((await get("")).statusCode, 200, "serving stored bytes takes no queue slot");
    } finally {
      release();
      await slow;
    }
    assert.equal((await decoded(await get("w=100"))).width, 100, "the refusal was not cached");
  });

  test("single flight: identical concurrent requests compute once and take one queue slot", async (t) => {
    // One slot, one waiting place: a second computation of the same variant would be refused as busy.
    const { app, get, variants } = await setUp(t, { IMGVAULT_IMAGE_CONCURRENCY: "1", IMGVAULT_IMAGE_QUEUE_LIMIT: "1" });
    let release!: () => void;
    const slow = app.services.queue.run(() => new Promise<void>((resolve) => (release = resolve)));
    let settled = 0;
    const requests = [get("w=120&format=webp"), get("w=120&format=webp"), get("format=webp&w=120")].map((request) =>
      request.finally(() => (settled += 1)),
    );
    // Until all three wait for the variant (or one was answered: then single flight failed).
    while (variants.waiting < requests.length && settled === 0) await new Promise((resolve) => setImmediate(resolve));
    assert.equal(settled, 0, "no request was answered while the only slot was held");
    assert.equal(app.services.queue.depth, 1, "the three requests wait on one queued job");
    release();
    await slow;
    const responses = await Promise.all(requests);
    for (const response of responses) {
      assert.equal(response.statusCode, 200, response.body);
      assert.ok(response.rawPayload.equals(responses[0]!.rawPayload));
    }
    assert.deepEqual(variants.stats, { computed: 1, memoryHits: 0, diskHits: 0 });
  });
});

describe("the variant cache", () => {
  test("a variant is computed once, then served from memory, or from disk when memory caching is off", async (t) => {
    const warm = await setUp(t);
    await get2(warm.get);
    assert.deepEqual(warm.variants.stats, { computed: 1, memoryHits: 1, diskHits: 0 });

    const cold = await setUp(t, { IMGVAULT_HOT_CACHE_BYTES: "0" });
    await get2(cold.get);
    assert.deepEqual(cold.variants.stats, { computed: 1, memoryHits: 0, diskHits: 1 });
    assert.equal(cold.app.services.variantCache.size, 1);

    async function get2(get: typeof warm.get) {
      const first = await get("w=150&format=webp");
      const second = await get("w=150&format=webp");
      assert.ok(second.rawPayload.equals(first.rawPayload));
      assert.equal(second.headers.etag, first.headers.etag);
    }
  });

  test("the disk cache keeps under its byte cap by evicting the least recently used variants", async (t) => {
    const { app, get, variants } = await setUp(t, { IMGVAULT_HOT_CACHE_BYTES: "0", IMGVAULT_VARIANT_CACHE_BYTES: "12000" });
    const cache = app.services.variantCache;
    const sizes: number[] = [];
    for (const width of [60, 61, 62, 63, 64, 65]) {
      sizes.push((await get(`w=${width}&format=png`)).rawPayload.length);
      assert.ok(cache.bytes <= 12000, `${cache.bytes} bytes cached`);
    }
    assert.ok(sizes.reduce((sum, size) => sum + size, 0) > 12000, `the variants (${sizes.join(", ")} bytes) overflow the cap`);
    assert.ok(cache.size < sizes.length, "some were evicted");
    assert.equal(variants.stats.computed, 6);

    // The newest is still cached; the oldest was evicted and is computed again.
    await get("w=65&format=png");
    assert.equal(variants.stats.diskHits, 1);
    await get("w=60&format=png");
    assert.equal(variants.stats.computed, 7);
  });

  test("replacing the source makes its variants unreachable: the same URL gives a variant of the new bytes", async (t) => {
    const { app, key, get, variants } = await setUp(t);
    const before = await get("w=100");
    assert.deepEqual([(await decoded(before)).width, (await decoded(before)).height], [100, 75]);
    const square = join(dir, "square.png");
    await sharp({ create: { width: 200, height: 200, channels: 3, background: "#c03080" } }).png().toFile(square);
    const replaced = await upload(app, key, square, "square.png", { method: "PATCH", url: "/image/landscape.jpg/" });
    assert.equal(replaced.statusCode, 200);
    const after = await get("w=100");
    const real = await decoded(after);
    assert.deepEqual([real.format, real.width, real.height], ["png", 100, 100]);
    assert.notEqual(after.headers.etag, before.headers.etag);
    assert.equal(variants.stats.computed, 2);
    assert.equal((await get("w=100", { "if-none-match": String(before.headers.etag) })).statusCode, 200);

    const deleted = await app.inject({ method: "DELETE", url: "/image/landscape.jpg/", headers: auth(key) });
    assert.equal(deleted.statusCode, 200);
    assertError(await get("w=100"), 404, "image_not_found");
  });
});

describe("metadata computed at upload", () => {
  test("the image object carries a ThumbHash and EXIF highlights (or null)", async (t) => {
    const { app, key } = await setUp(t, {}, { "turned.jpg": fixture("valid/exif-orientation6-gps.jpg").path, "wheel.png": fixture("valid/alpha.png").path });
    const list = await app.inject({ method: "GET", url: "/image/", headers: auth(key) });
    const images = new Map(list.json<Array<{ name: string; thumbhash: string | null; exif: Record<string, unknown> | null }>>().map((image) => [image.name, image]));
    for (const image of images.values()) {
      assert.equal(typeof image.thumbhash, "string");
      const bytes = Buffer.from(image.thumbhash!, "base64");
      assert.ok(bytes.length >= 5 && bytes.length <= 25, `a ThumbHash is a few bytes, got ${bytes.length}`);
    }
    assert.equal(images.get("turned.jpg")?.exif?.orientation, 6);
    assert.deepEqual(Object.keys(images.get("turned.jpg")?.exif ?? {}).sort(), ["lens", "make", "model", "orientation", "taken_at"]);
    assert.equal(images.get("wheel.png")?.exif, null);

    const row = await app.services.images.find((await app.services.accounts.authenticate(key)).userId, "wheel.png");
    assert.equal(JSON.parse(row.metadata ?? "{}").has_alpha, true);
  });

  test("a replacement is described afresh; the PATCH answer shows it", async (t) => {
    const { app, key } = await setUp(t);
    const created = await app.inject({ method: "GET", url: "/image/", headers: auth(key) });
    const first = created.json<Array<{ thumbhash: string }>>()[0]!.thumbhash;
    const replaced = await upload(app, key, fixture("valid/exif-orientation6-gps.jpg").path, "x.jpg", { method: "PATCH", url: "/image/landscape.jpg/" });
    const body = replaced.json<{ thumbhash: string; exif: { orientation: number } | null }>();
    assert.notEqual(body.thumbhash, first);
    assert.equal(body.exif?.orientation, 6);
  });

  test("rows stored before metadata existed read as null and still transform", async (t) => {
    const { app, key, get } = await setUp(t);
    await app.services.database.db.updateTable("images").set({ metadata: null }).execute();
    const list = await app.inject({ method: "GET", url: "/image/", headers: auth(key) });
    const [image] = list.json<Array<{ thumbhash: string | null; exif: unknown }>>();
    assert.equal(image?.thumbhash, null);
    assert.equal(image?.exif, null);
    assert.equal((await decoded(await get("w=50"))).width, 50);
  });
});
