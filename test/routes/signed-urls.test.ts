// Signed URLs over HTTP: creation (any key, read included), keyless GETs with public caching,
// the same conditional/range/HEAD semantics, tampering, expiry on an injected clock, key rotation
// (configured and generated into the data directory), deleted and replaced images.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test, type TestContext } from "node:test";
import sharp from "sharp";
import { buildApp } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { signedResource } from "../../src/http/routes/signed.js";
import { rotateKeyFile, UrlSigner } from "../../src/services/signing.js";
import { auth, buildTestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { assertError, upload } from "../helpers/http.js";

const jpeg = fixture("valid/small.jpg").path;
const png = fixture("valid/small.png").path;

/** A clock the test moves by hand, starting on a whole second. */
function manualClock() {
  let now = Math.floor(Date.now() / 1000) * 1000;
  return {
    clock: () => new Date(now),
    advance(seconds: number) {
      now += seconds * 1000;
    },
  };
}

interface SignedUrl {
  url: string;
  expires_at: string;
}

async function setUp(t: TestContext, env: Record<string, string> = {}) {
  const time = manualClock();
  const testApp = await buildTestApp(t, env, { clock: time.clock });
  const key = await testApp.userKey();
  const created = await upload(testApp.app, key, jpeg, "cat.jpg");
  assert.equal(created.statusCode, 201, created.body);
  const image = created.json<{ sha256: string; updated_at: string }>();
  const sign = (body: Record<string, unknown> = {}, name = "cat.jpg", withKey = key) =>
    testApp.app.inject({
      method: "POST",
      url: `/image/${encodeURIComponent(name)}/signed-url`,
      headers: { ...auth(withKey), "content-type": "application/json" },
      payload: JSON.stringify(body),
    });
  const signedPath = async (body: Record<string, unknown> = {}) => {
    const response = await sign(body);
    assert.equal(response.statusCode, 200, response.body);
    const { url } = response.json<SignedUrl>();
    const parsed = new URL(url);
    return parsed.pathname + parsed.search;
  };
  /** A keyless GET (or HEAD) of a path, as a browser's <img> or a CDN sends it. */
  const fetch = (path: string, headers: Record<string, string> = {}, method: "GET" | "HEAD" = "GET") =>
    testApp.app.inject({ method, url: path, headers });
  return { ...testApp, key, image, time, sign, signedPath, fetch, bytes: await readFile(jpeg) };
}

describe("POST /image/<name>/signed-url", () => {
  test("answers a keyless URL under /s/<owner id>/<name> with exp, kid and sig, and its expiry", async (t) => {
    const { app, key, sign, time } = await setUp(t);
    const response = await sign({ expires_in: 600 });
    assert.equal(response.statusCode, 200, response.body);
    const body = response.json<SignedUrl>();
    assert.deepEqual(Object.keys(body).sort(), ["expires_at", "url"]);
    assert.equal(body.expires_at, new Date(time.clock().getTime() + 600_000).toISOString());
    const url = new URL(body.url);
    const { userId } = await app.services.accounts.authenticate(key);
    assert.equal(url.pathname, `/s/${userId}/cat.jpg`);
    assert.deepEqual([...url.searchParams.keys()], ["exp", "kid", "sig"]);
    assert.equal(url.searchParams.get("exp"), String(time.clock().getTime() / 1000 + 600));
    assert.doesNotMatch(body.url, /user\d|Token|imgv_/, "no username or key in the URL");
  });

  test("defaults to one hour; refuses 0, more than 7 days and a non-integer", async (t) => {
    const { sign, time } = await setUp(t);
    const body = (await sign()).json<SignedUrl>();
    assert.equal(body.expires_at, new Date(time.clock().getTime() + 3_600_000).toISOString());
    assert.equal((await sign({ expires_in: 7 * 24 * 3600 })).statusCode, 200);
    for (const expires_in of [0, 7 * 24 * 3600 + 1, 1.5, "soon"]) {
      const response = await sign({ expires_in });
      assertError(response, 400, "validation_failed");
      assert.match(response.body, /expires_in/);
    }
  });

  test("carries the canonical transform parameters; invalid ones are refused naming them", async (t) => {
    const { sign } = await setUp(t);
    const url = new URL((await sign({ format: "webp", w: 100, fit: "inside", dpr: 1 })).json<SignedUrl>().url);
    assert.equal(url.search.split("&exp=")[0], "?w=100&format=webp");
    const refused = await sign({ w: 0 });
    assertError(refused, 400, "invalid_parameter");
    assert.match(refused.json<{ error: { message: string } }>().error.message, /"w"/);
  });

  test("refuses a transform whose output is over the limit, at signing time", async (t) => {
    const { sign } = await setUp(t, { IMGVAULT_MAX_OUTPUT_PIXELS: "10000" });
    assertError(await sign({ w: 4000, enlarge: true }), 400, "output_too_large");
  });

  test("a read-only key may sign (it reads); no key, another user's image or a missing one may not", async (t) => {
    const { app, sign, key } = await setUp(t);
    const { userId } = await app.services.accounts.authenticate(key);
    const readKey = (await app.services.accounts.issueKey(userId, { scope: "read" })).key;
    assert.equal((await sign({}, "cat.jpg", readKey)).statusCode, 200);
    assertError(await app.inject({ method: "POST", url: "/image/cat.jpg/signed-url", payload: {} }), 401, "unauthorized");
    const stranger = await app.inject({ method: "POST", url: "/image/cat.jpg/signed-url", headers: auth(await setUpOther()), payload: {} });
    assertError(stranger, 404, "image_not_found");
    assertError(await sign({}, "nothing.jpg"), 404, "image_not_found");
    const wrongMethod = await app.inject({ method: "GET", url: "/image/cat.jpg/signed-url", headers: auth(key) });
    assert.equal(wrongMethod.statusCode, 405);

    async function setUpOther() {
      const { user } = await app.services.accounts.ensureUser("stranger", "correct horse battery staple");
      return (await app.services.accounts.issueKey(user.id)).key;
    }
  });
});

describe("GET of a signed URL", () => {
  test("serves the bytes without a key, publicly cacheable for the time left", async (t) => {
    const { signedPath, fetch, bytes, image, time } = await setUp(t);
    const path = await signedPath({ expires_in: 600 });
    const response = await fetch(path);
    assert.equal(response.statusCode, 200, response.body);
    assert.ok(response.rawPayload.equals(bytes));
    assert.equal(response.headers["content-type"], "image/jpeg");
    assert.equal(response.headers["cache-control"], "public, max-age=600");
    assert.equal(response.headers.etag, `"${image.sha256}"`);
    assert.ok(response.headers["content-security-policy"], "the image security headers apply here too");
    time.advance(250);
    assert.equal((await fetch(path)).headers["cache-control"], "public, max-age=350");
  });

  test("a key in the request changes nothing; the URL alone decides", async (t) => {
    const { signedPath, fetch } = await setUp(t);
    const path = await signedPath();
    assert.equal((await fetch(path, { authorization: "Token not-a-key" })).statusCode, 200);
  });

  test("has the same ETag/304, Range and HEAD semantics", async (t) => {
    const { signedPath, fetch, bytes, image } = await setUp(t);
    const path = await signedPath();
    const etag = `"${image.sha256}"`;
    const notModified = await fetch(path, { "if-none-match": etag });
    assert.equal(notModified.statusCode, 304);
    assert.equal(notModified.headers["cache-control"], "public, max-age=3600");
    assert.equal((await fetch(path, { "if-modified-since": new Date(image.updated_at).toUTCString() })).statusCode, 304);
    const part = await fetch(path, { range: "bytes=0-99" });
    assert.equal(part.statusCode, 206);
    assert.equal(part.headers["content-range"], `bytes 0-99/${bytes.length}`);
    assert.ok(part.rawPayload.equals(bytes.subarray(0, 100)));
    const unsatisfiable = await fetch(path, { range: `bytes=${bytes.length}-` });
    assertError(unsatisfiable, 416, "range_not_satisfiable");
    assert.equal(unsatisfiable.headers["cache-control"], "no-store");
    const head = await fetch(path, {}, "HEAD");
    assert.equal(head.statusCode, 200);
    assert.equal(head.headers["content-length"], String(bytes.length));
    assert.equal(head.rawPayload.length, 0);
  });

  test("serves the signed transform, with the same variant and ETag as the keyed GET", async (t) => {
    const { app, key, signedPath, fetch } = await setUp(t);
    const path = await signedPath({ w: 64, format: "webp" });
    const response = await fetch(path);
    const metadata = await sharp(response.rawPayload).metadata();
    assert.deepEqual([metadata.format, metadata.width, metadata.height], ["webp", 64, 48]);
    const keyed = await app.inject({ method: "GET", url: "/image/cat.jpg/?w=64&format=webp", headers: auth(key) });
    assert.equal(response.headers.etag, keyed.headers.etag);
    assert.ok(response.rawPayload.equals(keyed.rawPayload));
  });

  test("format=auto is negotiated per request and varies on Accept", async (t) => {
    const { signedPath, fetch } = await setUp(t);
    const path = await signedPath({ w: 64, format: "auto" });
    const webp = await fetch(path, { accept: "image/webp,*/*" });
    assert.equal(webp.headers["content-type"], "image/webp");
    assert.equal(webp.headers.vary, "Accept");
    assert.equal((await fetch(path, { accept: "*/*" })).headers["content-type"], "image/jpeg");
  });

  test("a URL pinned to the content is immutable, and answers 404 once the image is replaced", async (t) => {
    const { app, key, signedPath, fetch, image } = await setUp(t);
    const pinned = await signedPath({ pin: true, expires_in: 900 });
    const url = new URL(pinned, "http://x");
    assert.equal(url.searchParams.get("v"), image.sha256.slice(0, 16));
    const response = await fetch(pinned);
    assert.equal(response.statusCode, 200);
    assert.equal(response.headers["cache-control"], "public, max-age=900, immutable");
    const following = await signedPath();

    assert.equal((await upload(app, key, png, "new.png", { method: "PATCH", url: "/image/cat.jpg/" })).statusCode, 200);
    assertError(await fetch(pinned), 404, "image_not_found");
    const followed = await fetch(following);
    assert.equal(followed.statusCode, 200, "an unpinned URL follows the name to the new bytes");
    assert.ok(followed.rawPayload.equals(await readFile(png)));
  });

  test("a deleted image answers 404", async (t) => {
    const { app, key, signedPath, fetch } = await setUp(t);
    const path = await signedPath();
    assert.equal((await app.inject({ method: "DELETE", url: "/image/cat.jpg/", headers: auth(key) })).statusCode, 200);
    assertError(await fetch(path), 404, "image_not_found");
  });

  test("a renamed image is no longer at the signed path", async (t) => {
    const { app, key, signedPath, fetch } = await setUp(t);
    const path = await signedPath();
    const form = new FormData();
    form.append("name", "dog.jpg");
    const body = new Response(form);
    const renamed = await app.inject({
      method: "PATCH",
      url: "/image/cat.jpg/",
      headers: { ...auth(key), "content-type": body.headers.get("content-type") ?? "" },
      payload: Buffer.from(await body.arrayBuffer()),
    });
    assert.equal(renamed.statusCode, 200, renamed.body);
    assertError(await fetch(path), 404, "image_not_found");
  });
});

describe("tampering and expiry", () => {
  test("any change to the path, a parameter or the signature → 403 signature_invalid", async (t) => {
    const { app, key, signedPath, fetch } = await setUp(t);
    await upload(app, key, png, "other.png");
    const path = await signedPath({ w: 64, format: "webp" });
    const url = new URL(path, "http://x");
    const { userId } = await app.services.accounts.authenticate(key);
    const withParams = (change: (params: URLSearchParams) => void, pathname = url.pathname) => {
      const params = new URLSearchParams(url.search);
      change(params);
      return `${pathname}?${params.toString()}`;
    };
    const sig = url.searchParams.get("sig")!;
    const flipped = (sig[0] === "A" ? "B" : "A") + sig.slice(1);
    const tampered: Record<string, string> = {
      "another image": withParams(() => undefined, `/s/${userId}/other.png`),
      "another owner": withParams(() => undefined, `/s/${userId + 1}/cat.jpg`),
      "a leading zero on the owner": withParams(() => undefined, `/s/0${userId}/cat.jpg`),
      "a larger width": withParams((params) => params.set("w", "2000")),
      "an added parameter": withParams((params) => params.set("h", "10")),
      "a removed parameter": withParams((params) => params.delete("format")),
      "a repeated parameter": withParams((params) => params.append("w", "64")),
      "a parameter we would refuse": withParams((params) => params.set("w", "abc")),
      "a later expiry": withParams((params) => params.set("exp", String(Number(params.get("exp")) + 3600))),
      "a version added": withParams((params) => params.set("v", "0123456789abcdef")),
      "another key id": withParams((params) => params.set("kid", "k-other")),
      "a changed signature": withParams((params) => params.set("sig", flipped)),
      "a truncated signature": withParams((params) => params.set("sig", sig.slice(0, -1))),
      "no signature": withParams((params) => params.delete("sig")),
      "no expiry": withParams((params) => params.delete("exp")),
    };
    for (const [change, tamperedPath] of Object.entries(tampered)) {
      const response = await fetch(tamperedPath);
      assertError(response, 403, "signature_invalid");
      assert.equal(response.headers["cache-control"], undefined, change);
    }
    assert.equal((await fetch(withParams((params) => params.set("utm_source", "mail")))).statusCode, 200, "unrelated parameters pass");
    assert.equal((await fetch(path)).statusCode, 200, "the URL itself still works");
  });

  test("expired → 403 signature_expired, from the second of expiry on", async (t) => {
    const { signedPath, fetch, time } = await setUp(t);
    const path = await signedPath({ expires_in: 60 });
    time.advance(59);
    const last = await fetch(path);
    assert.equal(last.statusCode, 200);
    assert.equal(last.headers["cache-control"], "public, max-age=1");
    time.advance(1);
    assertError(await fetch(path), 403, "signature_expired");
    time.advance(3600);
    assertError(await fetch(path), 403, "signature_expired");
    const tamperedExpired = path.replace(/sig=./, (match) => (match.endsWith("A") ? "sig=B" : "sig=A"));
    assertError(await fetch(tamperedExpired), 403, "signature_invalid");
  });
});

describe("signing keys", () => {
  const secret = () => randomBytes(32).toString("base64url");

  test("configured keys: the first signs; a previous one still verifies; a key taken out of the ring does not", async (t) => {
    const oldSecret = secret();
    const { app, key, fetch } = await setUp(t, { IMGVAULT_SIGNING_KEYS: `k-new:${secret()},k-old:${oldSecret}` });
    const { userId } = await app.services.accounts.authenticate(key);
    const fresh = (
      await app.inject({ method: "POST", url: "/image/cat.jpg/signed-url", headers: { ...auth(key), "content-type": "application/json" }, payload: "{}" })
    ).json<SignedUrl>();
    assert.equal(new URL(fresh.url).searchParams.get("kid"), "k-new");

    // A URL signed before the rotation, when k-old was current.
    const before = new UrlSigner({ current: { id: "k-old", secret: Buffer.from(oldSecret, "utf8") }, previous: [] });
    const signed = before.sign({ resource: signedResource(userId, "cat.jpg"), params: "", expiresInSeconds: 600 });
    assert.equal((await fetch(`${signedResource(userId, "cat.jpg")}?${signed.query}`)).statusCode, 200);

    const retired = new UrlSigner({ current: { id: "k-gone", secret: Buffer.from(secret(), "utf8") }, previous: [] });
    const stale = retired.sign({ resource: signedResource(userId, "cat.jpg"), params: "", expiresInSeconds: 600 });
    assertError(await fetch(`${signedResource(userId, "cat.jpg")}?${stale.query}`), 403, "signature_invalid");
  });

  test("a generated key survives restarts; after a rotation old URLs verify and new ones use the new key", async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), "imgvault-signing-"));
    t.after(() => rm(dataDir, { recursive: true, force: true }));
    // One data directory across restarts: SQLite and files in it, whatever backend the suite runs on.
    const config = loadConfig({ IMGVAULT_DATA_DIR: dataDir, IMGVAULT_GC_GRACE_SECONDS: "0" });
    const start = () => buildApp(config, { logger: false });

    let app = await start();
    let path: string;
    let kid: string | null;
    try {
      const { user } = await app.services.accounts.ensureUser("rotator", "correct horse battery staple");
      const key = (await app.services.accounts.issueKey(user.id)).key;
      assert.equal((await upload(app, key, jpeg, "cat.jpg")).statusCode, 201);
      const url = new URL(
        (
          await app.inject({ method: "POST", url: "/image/cat.jpg/signed-url", headers: { ...auth(key), "content-type": "application/json" }, payload: "{}" })
        ).json<SignedUrl>().url,
      );
      path = url.pathname + url.search;
      kid = url.searchParams.get("kid");
    } finally {
      await app.close();
    }

    app = await start();
    try {
      assert.equal((await app.inject({ method: "GET", url: path })).statusCode, 200, "same generated key after a restart");
    } finally {
      await app.close();
    }

    await rotateKeyFile(dataDir);
    app = await start();
    try {
      assert.equal((await app.inject({ method: "GET", url: path })).statusCode, 200, "signed before the rotation, still valid");
      const key = (await app.services.accounts.issueKey((await app.services.accounts.ensureUser("rotator", "correct horse battery staple")).user.id)).key;
      const fresh = new URL(
        (
          await app.inject({ method: "POST", url: "/image/cat.jpg/signed-url", headers: { ...auth(key), "content-type": "application/json" }, payload: "{}" })
        ).json<SignedUrl>().url,
      );
      assert.notEqual(fresh.searchParams.get("kid"), kid);
      assert.equal((await app.inject({ method: "GET", url: fresh.pathname + fresh.search })).statusCode, 200);
    } finally {
      await app.close();
    }
  });
});
