/**
 * Hostile and broken input, table-driven: every refused file of the fixture corpus as POST and as
 * PATCH, oversized bodies, malformed multipart, hostile names and hostile URLs. Each case asserts
 * the exact status and code, that nothing was stored or changed, and that the server still answers.
 */
import assert from "node:assert/strict";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import { request as httpRequest, type IncomingHttpHeaders } from "node:http";
import { connect } from "node:net";
import { basename, dirname, join } from "node:path";
import { describe, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { isAppError } from "../../src/errors.js";
import { decodeFully, probeImage } from "../../src/processing/probe.js";
import { auth, buildTestApp, multipart, type TestApp } from "../helpers/app.js";
import { defaultImageLimits, fixture, refusedFixtures } from "../helpers/fixtures.js";
import { assertError, filesUnder, upload } from "../helpers/http.js";

const pngPath = fixture("valid/small.png").path;

/** What a user's storage looks like from outside and inside: list, bytes, blobs, staging. */
async function state(app: FastifyInstance, key: string, dataDir: string) {
  const list = (await app.inject({ method: "GET", url: "/image/?limit=1000", headers: auth(key) })).json<Array<{ name: string }>>();
  const bytes: Record<string, string> = {};
  for (const image of list) {
    const response = await app.inject({ method: "GET", url: `/image/${encodeURIComponent(image.name)}/`, headers: auth(key) });
    bytes[image.name] = response.rawPayload.toString("base64");
  }
  return {
    list,
    bytes,
    blobs: (await filesUnder(join(dataDir, "blobs"))).sort(),
    staging: await filesUnder(join(dataDir, "tmp")),
  };
}

async function assertStillAnswers(app: FastifyInstance): Promise<void> {
  const health = await app.inject({ method: "GET", url: "/healthz" });
  assert.equal(health.statusCode, 200, "the server still answers");
}

/** A user with one image, `existing.png`, to aim PATCHes at. */
async function withExistingImage(t: Parameters<typeof buildTestApp>[0], env: Record<string, string> = {}) {
  const testApp = await buildTestApp(t, env);
  const key = await testApp.userKey();
  assert.equal((await upload(testApp.app, key, pngPath, "existing.png")).statusCode, 201);
  return { ...testApp, key };
}

/** Tallies every hostile case tried, by outcome, and prints the table at the end of the run. */
const tally = new Map<string, number>();
function count(kind: string, outcome: string): void {
  const label = `${kind}\t${outcome}`;
  tally.set(label, (tally.get(label) ?? 0) + 1);
}
process.once("beforeExit", () => {
  if (tally.size === 0 || !process.env.HOSTILE_TALLY) return;
  const lines = [...tally.entries()].sort().map(([label, n]) => `${label}\t${n}`);
  process.stdout.write(`\nhostile cases (kind, outcome, count):\n${lines.join("\n")}\n`);
});

describe("refused files of the corpus, as POST and as PATCH", () => {
  for (const item of refusedFixtures) {
    const { status, code, stage } = item.expect;
    test(`${item.name}: ${status} ${code}, nothing stored, the old image unchanged`, async (t) => {
      const { app, key, dataDir } = await withExistingImage(t);
      const before = await state(app, key, dataDir);

      assertError(await upload(app, key, item.path, "upload.png"), status, code);
      assert.deepEqual(await state(app, key, dataDir), before, "POST stored nothing");
      count("corpus file POST", `${status} ${code}`);

      const patched = await upload(app, key, item.path, "upload.png", { method: "PATCH", url: "/image/existing.png/" });
      assertError(patched, status, code);
      assert.deepEqual(await state(app, key, dataDir), before, "PATCH left the old image as it was");
      count("corpus file PATCH", `${status} ${code}`);

      const renaming = await upload(app, key, item.path, "upload.png", {
        method: "PATCH",
        url: "/image/existing.png/",
        fields: { name: "renamed.png" },
      });
      assertError(renaming, status, code);
      assert.deepEqual(await state(app, key, dataDir), before, "a refused file also cancels the rename sent with it");
      count("corpus file PATCH+rename", `${status} ${code}`);
      await assertStillAnswers(app);
    });

    if (stage === "probe") {
      test(`${item.name} is refused from its header alone, before any pixel is decoded`, async () => {
        await assert.rejects(probeImage(item.path, defaultImageLimits), (error) => isAppError(error) && error.code === code);
      });
    }
  }

  test("every bomb is refused by the header check", () => {
    const bombs = refusedFixtures.filter((item) => item.category === "bomb");
    assert.ok(bombs.length >= 5);
    for (const bomb of bombs) {
      assert.equal(bomb.expect.stage, "probe", bomb.name);
      assert.ok(["too_many_pixels", "too_many_frames"].includes(bomb.expect.code), bomb.name);
    }
  });

  test("decoding has its own pixel limit too, should a bomb ever get past the header check", async () => {
    for (const name of ["hostile/bomb-40000x40000.png", "hostile/bomb-65500x65500.jpg"]) {
      await assert.rejects(decodeFully(fixture(name).path, defaultImageLimits), (error) => isAppError(error) && error.code === "too_many_pixels");
    }
  });
});

describe("bodies over the byte limit", () => {
  test("413 for POST and PATCH; nothing staged or stored", async (t) => {
    const { app, key, dataDir } = await withExistingImage(t, { IMGVAULT_MAX_UPLOAD_BYTES: String(64 * 1024) });
    const before = await state(app, key, dataDir);
    const big = Buffer.concat([await readFile(pngPath), Buffer.alloc(200 * 1024, 7)]);
    const posted = await upload(app, key, pngPath, "big.png", {});
    assert.equal(posted.statusCode, 201, "a small file is fine");
    await app.inject({ method: "DELETE", url: "/image/big.png/", headers: auth(key) });
    await app.services.images.sweep();
    const { uploadBytes } = await import("../helpers/http.js");
    assertError(await uploadBytes(app, key, { bytes: big, filename: "big.png" }), 413, "payload_too_large");
    assertError(await uploadBytes(app, key, { bytes: big, filename: "big.png" }, { method: "PATCH", url: "/image/existing.png/" }), 413, "payload_too_large");
    assert.deepEqual(await state(app, key, dataDir), before);
    count("oversized body", "413 payload_too_large");
    count("oversized body", "413 payload_too_large");
  });

  test("the server stops reading an oversized upload: it answers 413 and closes before the client has sent it all", async (t) => {
    const { app, key, dataDir } = await withExistingImage(t, { IMGVAULT_MAX_UPLOAD_BYTES: String(64 * 1024) });
    const url = new URL(await app.listen({ host: "127.0.0.1", port: 0 }));
    const declared = 256 * 1024 * 1024;
    const boundary = "bigboundary";
    const socket = connect(Number(url.port), url.hostname);
    await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
    let response = "";
    socket.on("data", (chunk: Buffer) => (response += chunk.toString("latin1")));
    socket.on("error", () => {});
    const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
    let isClosed = false;
    void closed.then(() => (isClosed = true));
    socket.write(
      `POST /image/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token ${key}\r\nContent-Type: multipart/form-data; boundary=${boundary}\r\n` +
        `Content-Length: ${declared}\r\n\r\n--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="huge.png"\r\n\r\n`,
    );
    const chunk = Buffer.alloc(256 * 1024, 1);
    let sent = 0;
    while (!isClosed && sent < declared) {
      // Writing into a closed socket fails; the loop ends at the close either way.
      const drained = socket.write(chunk);
      sent += chunk.length;
      if (!drained) await Promise.race([new Promise((resolve) => socket.once("drain", resolve)), closed]);
    }
    await closed;
    assert.match(response, /^HTTP\/1\.1 413 /);
    assert.ok(sent < declared, `the server closed the connection after ${sent} of ${declared} bytes`);
    assert.deepEqual(await filesUnder(join(dataDir, "tmp")), []);
    count("oversized body, real socket", "413 + connection closed early");
  });
});

interface RawResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** One request with the path sent exactly as given (no dot-segment resolution, no re-encoding). */
function rawRequest(base: URL, method: string, path: string, headers: Record<string, string>, body?: Buffer): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const request = httpRequest({ host: base.hostname, port: base.port, method, path, headers, agent: false }, (response) => {
      const chunks: Buffer[] = [];
      response.on("data", (chunk: Buffer) => chunks.push(chunk));
      response.on("end", () => resolve({ statusCode: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }));
      response.on("error", reject);
    });
    request.on("error", reject);
    request.end(body);
  });
}

/** A multipart body written by hand, so that any header value (raw quotes, control bytes) reaches the parser. */
function rawMultipart(boundary: string, parts: Array<{ disposition?: string; contentType?: string; body: Buffer | string }>, end = true): Buffer {
  const chunks: Buffer[] = [];
  for (const part of parts) {
    let head = `--${boundary}\r\n`;
    if (part.disposition !== undefined) head += `Content-Disposition: ${part.disposition}\r\n`;
    if (part.contentType !== undefined) head += `Content-Type: ${part.contentType}\r\n`;
    chunks.push(Buffer.from(`${head}\r\n`, "utf8"), Buffer.isBuffer(part.body) ? part.body : Buffer.from(part.body, "utf8"), Buffer.from("\r\n"));
  }
  if (end) chunks.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(chunks);
}

describe("malformed multipart, as POST and as PATCH", async () => {
  const png = await readFile(pngPath);
  const boundary = "----imgvaultBoundary0123456789";
  const contentType = `multipart/form-data; boundary=${boundary}`;
  const imagePart = (filename = "a.png") => ({ disposition: `form-data; name="image"; filename="${filename}"`, contentType: "image/png", body: png });
  const whole = rawMultipart(boundary, [imagePart()]);
  const cases: Array<{ what: string; contentType: string; body: Buffer | string; status: number; code: string; patch?: "accepted" }> = [
    { what: "a boundary the body does not use", contentType: "multipart/form-data; boundary=notTheBoundary", body: whole, status: 400, code: "malformed_multipart" },
    { what: "no boundary parameter", contentType: "multipart/form-data", body: whole, status: 400, code: "malformed_multipart" },
    { what: "an empty body", contentType, body: "", status: 400, code: "missing_image_field" },
    { what: "a body that is not multipart", contentType, body: "hello, this is not multipart", status: 400, code: "malformed_multipart" },
    { what: "only the closing boundary", contentType, body: `--${boundary}--\r\n`, status: 400, code: "missing_image_field" },
    { what: "no image field", contentType, body: rawMultipart(boundary, [{ ...imagePart(), disposition: 'form-data; name="picture"; filename="a.png"' }]), status: 400, code: "missing_image_field" },
    { what: "two image fields", contentType, body: rawMultipart(boundary, [imagePart("a.png"), imagePart("b.png")]), status: 400, code: "duplicate_image_field" },
    { what: "an image field without a filename (a text field)", contentType, body: rawMultipart(boundary, [{ disposition: 'form-data; name="image"', body: png }]), status: 400, code: "missing_image_field" },
    { what: "an image field with an empty filename", contentType, body: rawMultipart(boundary, [imagePart("")]), status: 400, code: "invalid_name", patch: "accepted" },
    { what: "a part without Content-Disposition", contentType, body: rawMultipart(boundary, [{ contentType: "image/png", body: png }]), status: 400, code: "missing_image_field" },
    { what: "a part header that is not a header", contentType, body: Buffer.concat([Buffer.from(`--${boundary}\r\nnot a header at all\r\n\r\n`), png, Buffer.from(`\r\n--${boundary}--\r\n`)]), status: 400, code: "missing_image_field" },
    { what: "a body that ends early, inside the file", contentType, body: whole.subarray(0, whole.length - 40), status: 400, code: "malformed_multipart" },
    { what: "a body that ends inside the part headers", contentType, body: whole.subarray(0, 60), status: 400, code: "malformed_multipart" },
    { what: "a body with no closing boundary", contentType, body: rawMultipart(boundary, [imagePart()], false), status: 400, code: "malformed_multipart" },
    {
      what: "more parts than allowed",
      contentType,
      body: rawMultipart(boundary, Array.from({ length: 40 }, (_, index) => ({ disposition: `form-data; name="f${index}"`, body: "v" }))),
      status: 400,
      code: "malformed_multipart",
    },
    { what: "more files than allowed", contentType, body: rawMultipart(boundary, Array.from({ length: 8 }, (_, index) => imagePart(`${index}.png`))), status: 400, code: "malformed_multipart" },
    { what: "the bare image bytes (not a form)", contentType: "image/png", body: png, status: 415, code: "unsupported_content_type" },
    { what: "JSON", contentType: "application/json", body: JSON.stringify({ image: png.toString("base64") }), status: 415, code: "unsupported_content_type" },
    { what: "a form-urlencoded body", contentType: "application/x-www-form-urlencoded", body: "image=abc", status: 415, code: "unsupported_content_type" },
  ];
  for (const item of cases) {
    test(`${item.what}: ${item.status} ${item.code}`, async (t) => {
      const { app, key, dataDir } = await withExistingImage(t);
      const before = await state(app, key, dataDir);
      for (const [method, url] of [
        ["POST", "/image/"],
        ["PATCH", "/image/existing.png/"],
      ] as const) {
        const response = await app.inject({ method, url, headers: { ...auth(key), "content-type": item.contentType }, payload: item.body });
        if (method === "PATCH" && item.patch === "accepted") {
          // PATCH takes no name from the file part: the file alone is a valid replacement.
          assert.equal(response.statusCode, 200, response.body);
          count(`malformed multipart ${method}`, "200 file name ignored");
          continue;
        }
        assertError(response, item.status, item.code);
        assert.deepEqual(await state(app, key, dataDir), before, `${method} changed nothing`);
        count(`malformed multipart ${method}`, `${item.status} ${item.code}`);
      }
      await assertStillAnswers(app);
    });
  }
});

describe("hostile names", () => {
  /** Uploads with a raw multipart filename (no browser escaping), and sends the same text as PATCH's `name`. */
  async function tryName(testApp: TestApp & { key: string }, name: string) {
    const { app, key } = testApp;
    const png = await readFile(pngPath);
    const boundary = "nameBoundary";
    const body = rawMultipart(boundary, [{ disposition: `form-data; name="image"; filename="${name}"`, contentType: "image/png", body: png }]);
    const posted = await app.inject({
      method: "POST",
      url: "/image/",
      headers: { ...auth(key), "content-type": `multipart/form-data; boundary=${boundary}` },
      payload: body,
    });
    // The PATCH must not meet the name the POST just took.
    if (posted.statusCode === 201) {
      await app.inject({ method: "DELETE", url: `/image/${encodeURIComponent(posted.json<{ name: string }>().name)}/`, headers: auth(key) });
    }
    const form = await multipart([], { name });
    const patched = await app.inject({ method: "PATCH", url: "/image/existing.png/", headers: { ...auth(key), ...form.headers }, payload: form.payload });
    return { posted, patched };
  }

  type Expect = { stored: string } | { status: number; code: string };
  // POST: the directories of a file name are dropped (as the original did), then the rest is validated.
  // PATCH `name`: nothing is dropped; the text is validated as it is.
  const cases: Array<{ what: string; name: string; post: Expect; patch: Expect }> = [
    { what: "parent directories", name: "../../x.png", post: { stored: "x.png" }, patch: { status: 400, code: "invalid_name" } },
    { what: "deep parent directories", name: "../../../../../../../../etc/passwd", post: { stored: "passwd" }, patch: { status: 400, code: "invalid_name" } },
    { what: "an absolute path", name: "/etc/passwd", post: { stored: "passwd" }, patch: { status: 400, code: "invalid_name" } },
    { what: "backslash directories", name: "..\\..\\x.png", post: { stored: "x.png" }, patch: { status: 400, code: "invalid_name" } },
    { what: "a Windows path", name: "C:\\Windows\\System32\\x.png", post: { stored: "x.png" }, patch: { status: 400, code: "invalid_name" } },
    { what: "a UNC path", name: "\\\\server\\share\\x.png", post: { stored: "x.png" }, patch: { status: 400, code: "invalid_name" } },
    { what: "percent-encoded dots and slash (kept as text)", name: "%2e%2e%2fx.png", post: { stored: "%2e%2e%2fx.png" }, patch: { stored: "%2e%2e%2fx.png" } },
    { what: "a NUL byte", name: "a\u0000b.png", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "a tab", name: "a\tb.png", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "an escape sequence", name: "\u001b[31mred.png", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "DEL", name: "a\u007fb.png", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "a C1 control", name: "a\u0085b.png", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "1,000 characters", name: `${"n".repeat(996)}.png`, post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "256 bytes of UTF-8", name: `${"é".repeat(126)}.png`, post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: '"."', name: ".", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: '".."', name: "..", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: '"..." ', name: "...", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "a trailing dot", name: "x.png.", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "a trailing space", name: "x.png ", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "a leading space", name: " x.png", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "an empty name", name: "", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "a name of white space", name: "   ", post: { status: 400, code: "invalid_name" }, patch: { status: 400, code: "invalid_name" } },
    { what: "decomposed Unicode (stored as NFC)", name: "cafe\u0301.png", post: { stored: "caf\u00e9.png" }, patch: { stored: "caf\u00e9.png" } },
    { what: "markup", name: "<img src=x onerror=alert(1)>.png", post: { stored: "<img src=x onerror=alert(1)>.png" }, patch: { stored: "<img src=x onerror=alert(1)>.png" } },
  ];
  for (const item of cases) {
    test(`${item.what}`, async (t) => {
      const testApp = await withExistingImage(t);
      const { app, key, dataDir } = testApp;
      const { posted, patched } = await tryName(testApp, item.name);
      for (const [method, response, expected] of [
        ["POST", posted, item.post],
        ["PATCH", patched, item.patch],
      ] as const) {
        if ("stored" in expected) {
          assert.ok(response.statusCode === 201 || response.statusCode === 200, `${method}: ${response.statusCode} ${response.body}`);
          assert.equal(response.json().name, expected.stored, method);
          count(`hostile name ${method}`, `${response.statusCode} stored as data`);
        } else {
          assertError(response, expected.status, expected.code);
          count(`hostile name ${method}`, `${expected.status} ${expected.code}`);
        }
      }
      // Whatever was stored is reachable by its name, as data, and nothing appeared outside storage.
      const list = (await app.inject({ method: "GET", url: "/image/", headers: auth(key) })).json<Array<{ name: string }>>();
      for (const image of list) {
        const fetched = await app.inject({ method: "GET", url: `/image/${encodeURIComponent(image.name)}/`, headers: auth(key) });
        assert.equal(fetched.statusCode, 200, image.name);
      }
      assert.ok(!list.some((image) => image.name.includes("/") || image.name.includes("\\")));
      assert.deepEqual(await filesUnder(join(dataDir, "tmp")), []);
      await assertStillAnswers(app);
    });
  }

  test("two names that differ only in Unicode normalisation are one name", async (t) => {
    const { app, key } = await withExistingImage(t);
    assert.equal((await upload(app, key, pngPath, "caf\u00e9.png")).json().name, "caf\u00e9.png");
    assert.equal((await upload(app, key, pngPath, "cafe\u0301.png")).json().name, "caf\u00e9-2.png", "NFD after NFC takes the next free name");
    const rename = await upload(app, key, pngPath, "x.png", { method: "PATCH", url: "/image/existing.png/", fields: { name: "cafe\u0301.png" } });
    assertError(rename, 409, "name_taken");
    count("hostile name PATCH", "409 name_taken");
    for (const spelling of ["caf%C3%A9.png", "cafe%CC%81.png"]) {
      assert.equal((await app.inject({ method: "GET", url: `/image/${spelling}/`, headers: auth(key) })).statusCode, 200, spelling);
    }
  });
});

describe("hostile URLs never reach outside storage", () => {
  test("traversal, absolute paths, mixed encodings and backslashes: only 4xx, the marker outside the data directory untouched", async (t) => {
    const { app, key, dataDir } = await withExistingImage(t);
    // A file beside the data directory, as a target worth reaching: a real PNG, so serving it would show.
    const marker = join(dirname(dataDir), `${basename(dataDir)}-marker.png`);
    await writeFile(marker, await readFile(fixture("valid/still.gif").path));
    t.after(() => rm(marker, { force: true }));
    const markerName = basename(marker);
    const markerBytes = await readFile(marker);
    const markerStat = await stat(marker);
    const passwdStat = await stat("/etc/passwd").catch(() => undefined);
    const before = await state(app, key, dataDir);

    const up = (levels: number, separator: string) => Array.from({ length: levels }, () => `..${separator}`).join("");
    const names: string[] = [
      "%2Fetc%2Fpasswd",
      "/etc/passwd",
      `${up(8, "%2F")}etc%2Fpasswd`,
      `${up(8, "%2f")}etc%2fpasswd`,
      `${up(2, "%2F")}${markerName}`,
      `${up(3, "%2F")}${markerName}`,
      `%2e%2e%2f%2e%2e%2f${markerName}`,
      `%2E%2E%2F%2E%2E%2F${markerName}`,
      `.%2e%2f.%2e%2f${markerName}`,
      `%2e.%2F%2e.%2F${markerName}`,
      `..%2F%2e%2e/${markerName}`,
      `%252e%252e%252f%252e%252e%252f${markerName}`,
      `${up(2, "%5C")}${markerName}`,
      `${up(2, "%5c")}${markerName}`,
      `..\\..\\${markerName}`,
      `${up(2, "/")}${markerName}`,
      `%c0%ae%c0%ae%c0%af%c0%ae%c0%ae%c0%af${markerName}`,
      `..%00%2F..%00%2F${markerName}`,
      `${markerName}%00.png`,
      encodeURIComponent(marker),
      `file%3A%2F%2F${encodeURIComponent(marker)}`,
      "%2e%2e",
      "%2e",
      "..",
      "%2Fetc%2Fshadow",
      `..%2Fimgvault.sqlite`,
      `..%2F..%2F${basename(dataDir)}%2Fimgvault.sqlite`,
      `.%2Fexisting.png`,
      `existing.png%2F..%2F..%2F${markerName}`,
    ];
    const form = await multipart([{ bytes: await readFile(pngPath), filename: "x.png" }]);
    const rename = await multipart([], { name: "renamed.png" });
    // A real socket: an in-process inject() would resolve dot segments the way a browser does, and
    // an attacker's client sends the path as it likes.
    const base = new URL(await app.listen({ host: "127.0.0.1", port: 0 }));
    const send = (method: string, path: string, headers: Record<string, string>, body?: Buffer) => rawRequest(base, method, path, headers, body);
    const methods: Record<string, (url: string) => Promise<RawResponse>> = {
      GET: (url) => send("GET", url, auth(key)),
      HEAD: (url) => send("HEAD", url, auth(key)),
      "GET Range": (url) => send("GET", url, { ...auth(key), range: "bytes=0-" }),
      "PATCH file": (url) => send("PATCH", url, { ...auth(key), ...form.headers }, form.payload),
      "PATCH rename": (url) => send("PATCH", url, { ...auth(key), ...rename.headers }, rename.payload),
      DELETE: (url) => send("DELETE", url, auth(key)),
    };
    for (const name of names) {
      for (const suffix of ["/", ""]) {
        for (const [method, call] of Object.entries(methods)) {
          const url = `/image/${name}${suffix}`;
          const response = await call(url);
          const text = response.body.toString("utf8");
          assert.ok(response.statusCode >= 400 && response.statusCode < 500, `${method} ${url}: ${response.statusCode} ${text.slice(0, 200)}`);
          assert.match(String(response.headers["content-type"]), /^application\/json/, `${method} ${url}`);
          assert.equal(response.body.includes(markerBytes.subarray(0, 16)), false, `${method} ${url} served the marker`);
          assert.equal(text.includes("root:"), false, `${method} ${url} served /etc/passwd`);
          const code = method === "HEAD" ? "(no body)" : (JSON.parse(text) as { error: { code: string } }).error.code;
          assert.equal(typeof code, "string", `${method} ${url} answers with the catalogue's error body: ${text}`);
          count(`hostile URL ${method}`, `${response.statusCode} ${code}`);
        }
      }
    }
    assert.ok((await readFile(marker)).equals(markerBytes), "the marker's bytes are unchanged");
    assert.equal((await stat(marker)).mtimeMs, markerStat.mtimeMs, "the marker was not written");
    if (passwdStat) assert.equal((await stat("/etc/passwd")).mtimeMs, passwdStat.mtimeMs);
    assert.deepEqual(await state(app, key, dataDir), before, "the user's own images are unchanged");
    await assertStillAnswers(app);
  });
});
