// HTTP semantics of GET/HEAD /image/<name>/ (RFC 9110): validators, conditional requests, HEAD,
// single byte ranges, caching headers, and If-Match on PATCH/DELETE when two editors race.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, test } from "node:test";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { auth, buildTestApp, multipart } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { assertError, upload } from "../helpers/http.js";

const photo = fixture("valid/photo.jpg").path;
const png = fixture("valid/small.png").path;
const gif = fixture("valid/animated.gif").path;

interface Uploaded {
  sha256: string;
  updated_at: string;
  bytes: number;
}

async function setUp(t: Parameters<typeof buildTestApp>[0], env: Record<string, string> = {}, file = photo) {
  const testApp = await buildTestApp(t, env);
  const key = await testApp.userKey();
  const created = await upload(testApp.app, key, file, "picture.jpg");
  assert.equal(created.statusCode, 201, created.body);
  const image = created.json<Uploaded>();
  const bytes = await readFile(file);
  const get = (headers: Record<string, string> = {}, method: "GET" | "HEAD" = "GET", url = "/image/picture.jpg/") =>
    testApp.app.inject({ method, url, headers: { ...auth(key), ...headers } });
  return { ...testApp, key, image, bytes, get };
}

/** Counts the store's reads from here on (a spy on the real store, which keeps working). */
function countReads(app: FastifyInstance): { reads: number } {
  const counter = { reads: 0 };
  const store = app.services.blobs;
  const read = store.read.bind(store);
  store.read = (...args: Parameters<typeof read>) => {
    counter.reads += 1;
    return read(...args);
  };
  return counter;
}

function assertNotModified(response: LightMyRequestResponse, etag: string): void {
  assert.equal(response.statusCode, 304, response.body);
  assert.equal(response.rawPayload.length, 0);
  assert.equal(response.headers.etag, etag);
  assert.equal(response.headers["cache-control"], "private, no-cache");
  assert.equal(response.headers["content-length"], undefined);
}

describe("validators and caching headers", () => {
  test("a GET carries the strong ETag of the content hash, Last-Modified, Accept-Ranges and private, no-cache", async (t) => {
    const { get, image, bytes } = await setUp(t);
    const response = await get();
    assert.equal(response.statusCode, 200);
    assert.ok(response.rawPayload.equals(bytes));
    assert.equal(response.headers.etag, `"${image.sha256}"`);
    assert.equal(response.headers["last-modified"], new Date(image.updated_at).toUTCString());
    assert.equal(response.headers["accept-ranges"], "bytes");
    assert.equal(response.headers["cache-control"], "private, no-cache");
    assert.equal(response.headers.vary, undefined);
  });

  test("replacing the bytes changes the ETag; renaming keeps it", async (t) => {
    const { app, key, get, image } = await setUp(t);
    const replaced = await upload(app, key, png, "x.png", { method: "PATCH", url: "/image/picture.jpg/" });
    assert.equal(replaced.statusCode, 200);
    const after = await get();
    assert.notEqual(after.headers.etag, `"${image.sha256}"`);
    assert.equal(after.headers.etag, `"${replaced.json<Uploaded>().sha256}"`);
    const body = await multipart([], { name: "renamed.jpg" });
    const renamed = await app.inject({ method: "PATCH", url: "/image/picture.jpg/", headers: { ...auth(key), ...body.headers }, payload: body.payload });
    assert.equal(renamed.statusCode, 200, renamed.body);
    assert.equal((await get({}, "GET", "/image/renamed.jpg/")).headers.etag, after.headers.etag, "same bytes, same tag");
  });
});

describe("If-None-Match and If-Modified-Since", () => {
  test("If-None-Match with the current tag, in a list, weak, or * answers 304 without a body", async (t) => {
    const { get, image } = await setUp(t);
    const etag = `"${image.sha256}"`;
    for (const header of [etag, `"other", ${etag}`, `W/${etag}`, `"a",W/${etag} , "b"`, "*"]) {
      assertNotModified(await get({ "if-none-match": header }), etag);
    }
  });

  test("If-None-Match with other tags answers 200 with the bytes", async (t) => {
    const { get, bytes } = await setUp(t);
    for (const header of [`"${"0".repeat(64)}"`, `W/"nope", "also-not"`, "garbage"]) {
      const response = await get({ "if-none-match": header });
      assert.equal(response.statusCode, 200, header);
      assert.ok(response.rawPayload.equals(bytes));
    }
  });

  test("If-Modified-Since at or after Last-Modified answers 304; before it, or not a date, 200", async (t) => {
    const { get, image } = await setUp(t);
    const modified = new Date(image.updated_at);
    const etag = `"${image.sha256}"`;
    assertNotModified(await get({ "if-modified-since": modified.toUTCString() }), etag);
    assertNotModified(await get({ "if-modified-since": new Date(modified.getTime() + 3_600_000).toUTCString() }), etag);
    assert.equal((await get({ "if-modified-since": new Date(modified.getTime() - 2000).toUTCString() })).statusCode, 200);
    assert.equal((await get({ "if-modified-since": "yesterday-ish" })).statusCode, 200);
  });

  test("If-None-Match wins over If-Modified-Since (RFC 9110 §13.2.2)", async (t) => {
    const { get, image } = await setUp(t);
    const later = new Date(Date.parse(image.updated_at) + 3_600_000).toUTCString();
    assert.equal((await get({ "if-none-match": '"other"', "if-modified-since": later })).statusCode, 200);
  });

  test("a tag from before a replacement no longer matches: the new bytes come back", async (t) => {
    const { app, key, get, image } = await setUp(t);
    await upload(app, key, png, "x.png", { method: "PATCH", url: "/image/picture.jpg/" });
    const response = await get({ "if-none-match": `"${image.sha256}"` });
    assert.equal(response.statusCode, 200);
    assert.ok(response.rawPayload.equals(await readFile(png)));
  });

  test("a 304 does not open the bytes", async (t) => {
    const { app, get, image } = await setUp(t, { IMGVAULT_HOT_CACHE_BYTES: "0" });
    const counter = countReads(app);
    assert.equal((await get({ "if-none-match": `"${image.sha256}"` })).statusCode, 304);
    assert.equal(counter.reads, 0);
  });
});

describe("HEAD", () => {
  test("sends the headers a GET sends, with the full Content-Length and no body, without reading the bytes", async (t) => {
    const { app, get, image, bytes } = await setUp(t, { IMGVAULT_HOT_CACHE_BYTES: "0" });
    const counter = countReads(app);
    const head = await get({}, "HEAD");
    assert.equal(head.statusCode, 200);
    assert.equal(head.rawPayload.length, 0);
    assert.equal(head.headers["content-length"], String(bytes.length));
    assert.equal(head.headers["content-type"], "image/jpeg");
    assert.equal(head.headers.etag, `"${image.sha256}"`);
    assert.equal(head.headers["accept-ranges"], "bytes");
    assert.equal(head.headers["cache-control"], "private, no-cache");
    assert.match(String(head.headers["content-disposition"]), /^inline; filename="picture.jpg"/);
    assert.equal(counter.reads, 0, "HEAD must not open the blob");

    const getResponse = await get();
    assert.equal(counter.reads, 1);
    for (const name of ["content-type", "content-length", "etag", "last-modified", "cache-control", "content-disposition"]) {
      assert.equal(head.headers[name], getResponse.headers[name], name);
    }
  });

  test("answers 304 to a matching If-None-Match, ignores Range, and 404 for a missing image", async (t) => {
    const { get, image, bytes } = await setUp(t);
    assert.equal((await get({ "if-none-match": `"${image.sha256}"` }, "HEAD")).statusCode, 304);
    const ranged = await get({ range: "bytes=0-9" }, "HEAD");
    assert.equal(ranged.statusCode, 200);
    assert.equal(ranged.headers["content-length"], String(bytes.length));
    assert.equal(ranged.headers["content-range"], undefined);
    const missing = await get({}, "HEAD", "/image/nothing.png/");
    assert.equal(missing.statusCode, 404);
  });
});

describe("Range", () => {
  const cases: Array<{ range: string; start: number; end: (size: number) => number; label: string }> = [
    { label: "the first byte", range: "bytes=0-0", start: 0, end: () => 0 },
    { label: "the first 100 bytes", range: "bytes=0-99", start: 0, end: () => 99 },
    { label: "a middle slice", range: "bytes=1000-1999", start: 1000, end: () => 1999 },
    { label: "open-ended", range: "bytes=5000-", start: 5000, end: (size) => size - 1 },
    { label: "the unit in capitals, spaces around", range: "BYTES=10 - 19", start: 10, end: () => 19 },
  ];
  for (const { label, range, start, end } of cases) {
    test(`${label} (${range}) → 206 with Content-Range`, async (t) => {
      const { get, bytes, image } = await setUp(t);
      const last = end(bytes.length);
      const response = await get({ range });
      assert.equal(response.statusCode, 206, response.body);
      assert.equal(response.headers["content-range"], `bytes ${start}-${last}/${bytes.length}`);
      assert.equal(response.headers["content-length"], String(last - start + 1));
      assert.equal(response.headers.etag, `"${image.sha256}"`);
      assert.equal(response.headers["content-type"], "image/jpeg");
      assert.ok(response.rawPayload.equals(bytes.subarray(start, last + 1)));
    });
  }

  test("the last byte, by position and as a one-byte suffix", async (t) => {
    const { get, bytes } = await setUp(t);
    const size = bytes.length;
    for (const range of [`bytes=${size - 1}-${size - 1}`, "bytes=-1", `bytes=${size - 1}-`]) {
      const response = await get({ range });
      assert.equal(response.statusCode, 206, range);
      assert.equal(response.headers["content-range"], `bytes ${size - 1}-${size - 1}/${size}`);
      assert.deepEqual([...response.rawPayload], [bytes[size - 1]]);
    }
  });

  test("a suffix (bytes=-N) gives the last N bytes; one longer than the file gives all of it", async (t) => {
    const { get, bytes } = await setUp(t);
    const size = bytes.length;
    const tail = await get({ range: "bytes=-500" });
    assert.equal(tail.statusCode, 206);
    assert.equal(tail.headers["content-range"], `bytes ${size - 500}-${size - 1}/${size}`);
    assert.ok(tail.rawPayload.equals(bytes.subarray(size - 500)));
    const all = await get({ range: `bytes=-${size + 1000}` });
    assert.equal(all.statusCode, 206);
    assert.equal(all.headers["content-range"], `bytes 0-${size - 1}/${size}`);
    assert.ok(all.rawPayload.equals(bytes));
  });

  test("a last position beyond the end is cut to the end", async (t) => {
    const { get, bytes } = await setUp(t);
    const size = bytes.length;
    const response = await get({ range: `bytes=${size - 10}-${size + 5000}` });
    assert.equal(response.statusCode, 206);
    assert.equal(response.headers["content-range"], `bytes ${size - 10}-${size - 1}/${size}`);
    assert.ok(response.rawPayload.equals(bytes.subarray(size - 10)));
  });

  test("a first position at or beyond the end, or an empty suffix, → 416 with Content-Range: bytes */size", async (t) => {
    const { get, bytes } = await setUp(t);
    const size = bytes.length;
    for (const range of [`bytes=${size}-`, `bytes=${size}-${size + 10}`, `bytes=${size * 2}-${size * 3}`, "bytes=-0"]) {
      const response = await get({ range });
      assertError(response, 416, "range_not_satisfiable");
      assert.equal(response.headers["content-range"], `bytes */${size}`, range);
      assert.equal(response.headers["content-disposition"], undefined, "an error is not an image");
      assert.equal(response.headers["cache-control"], "no-store");
    }
  });

  test("malformed, invalid (last before first), other units and several ranges are answered 200 whole", async (t) => {
    const { get, bytes } = await setUp(t);
    for (const range of ["bytes=abc", "bytes=5-2", "bytes=", "bytes=-", "items=0-9", "0-9", "bytes=0-9,20-29", "bytes=1-2, -3", "bytes=0x10-20"]) {
      const response = await get({ range });
      assert.equal(response.statusCode, 200, range);
      assert.equal(response.headers["content-range"], undefined);
      assert.ok(response.rawPayload.equals(bytes), range);
    }
  });

  test("ranges of an image too large for the memory cache are read from the store", async (t) => {
    const { get, bytes } = await setUp(t, { IMGVAULT_HOT_CACHE_BYTES: "0" });
    const response = await get({ range: "bytes=100000-100099" });
    assert.equal(response.statusCode, 206);
    assert.ok(response.rawPayload.equals(bytes.subarray(100000, 100100)));
  });

  test("a range of an image already in the memory cache is the same slice", async (t) => {
    const { get, bytes } = await setUp(t, {}, gif);
    assert.equal((await get()).statusCode, 200);
    const response = await get({ range: "bytes=6-9" });
    assert.equal(response.statusCode, 206);
    assert.ok(response.rawPayload.equals(bytes.subarray(6, 10)));
  });

  test("If-Range with the current strong tag or Last-Modified applies the range; a stale or weak one gives all", async (t) => {
    const { app, key, get, image } = await setUp(t);
    const modified = new Date(image.updated_at).toUTCString();
    assert.equal((await get({ range: "bytes=0-9", "if-range": `"${image.sha256}"` })).statusCode, 206);
    assert.equal((await get({ range: "bytes=0-9", "if-range": modified })).statusCode, 206);
    assert.equal((await get({ range: "bytes=0-9", "if-range": `W/"${image.sha256}"` })).statusCode, 200);
    await upload(app, key, png, "x.png", { method: "PATCH", url: "/image/picture.jpg/" });
    const stale = await get({ range: "bytes=0-9", "if-range": `"${image.sha256}"` });
    assert.equal(stale.statusCode, 200, "the client's partial copy is of other bytes: send the new ones whole");
    assert.ok(stale.rawPayload.equals(await readFile(png)));
  });
});

describe("If-Match on PATCH and DELETE", () => {
  test("two editors replace from the same version at once: one wins, the other gets 412", async (t) => {
    const { app, key, image } = await setUp(t);
    const ifMatch = { "if-match": `"${image.sha256}"` };
    const [first, second] = await Promise.all([
      upload(app, key, png, "a.png", { method: "PATCH", url: "/image/picture.jpg/", headers: ifMatch }),
      upload(app, key, gif, "b.gif", { method: "PATCH", url: "/image/picture.jpg/", headers: ifMatch }),
    ]);
    const statuses = [first.statusCode, second.statusCode].sort();
    assert.deepEqual(statuses, [200, 412], `${first.body} / ${second.body}`);
    const winner = first.statusCode === 200 ? first : second;
    const loser = first.statusCode === 200 ? second : first;
    assertError(loser, 412, "precondition_failed");
    const now = await app.inject({ method: "GET", url: "/image/picture.jpg/", headers: auth(key) });
    assert.equal(now.headers.etag, `"${winner.json<Uploaded>().sha256}"`, "the stored bytes are the winner's");
  });

  test("an edit and a delete from the same version race: exactly one of them happens", async (t) => {
    const { app, key, image } = await setUp(t);
    const ifMatch = { "if-match": `"${image.sha256}"` };
    const [patched, deleted] = await Promise.all([
      upload(app, key, png, "a.png", { method: "PATCH", url: "/image/picture.jpg/", headers: ifMatch }),
      app.inject({ method: "DELETE", url: "/image/picture.jpg/", headers: { ...auth(key), ...ifMatch } }),
    ]);
    const outcomes = [patched.statusCode, deleted.statusCode];
    assert.equal(outcomes.filter((status) => status === 200).length, 1, `${patched.body} / ${deleted.body}`);
    const now = await app.inject({ method: "GET", url: "/image/picture.jpg/", headers: auth(key) });
    if (patched.statusCode === 200) {
      assert.ok([404, 412].includes(deleted.statusCode));
      assert.equal(now.statusCode, 200);
    } else {
      assert.equal(deleted.statusCode, 200);
      assert.ok([404, 412].includes(patched.statusCode));
      assert.equal(now.statusCode, 404);
    }
  });

  test("the ETag a GET returned is what If-Match takes; a stale one is refused with 412 and changes nothing", async (t) => {
    const { app, key, get } = await setUp(t);
    const etag = String((await get()).headers.etag);
    const first = await upload(app, key, png, "a.png", { method: "PATCH", url: "/image/picture.jpg/", headers: { "if-match": etag } });
    assert.equal(first.statusCode, 200);
    assertError(await upload(app, key, gif, "b.gif", { method: "PATCH", url: "/image/picture.jpg/", headers: { "if-match": etag } }), 412, "precondition_failed");
    assertError(await app.inject({ method: "DELETE", url: "/image/picture.jpg/", headers: { ...auth(key), "if-match": etag } }), 412, "precondition_failed");
    assert.equal((await get()).headers.etag, `"${first.json<Uploaded>().sha256}"`);
  });
});
