import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import { auth, buildTestApp, multipart } from "../helpers/app.js";
import { bigFile, fixture, refusedFixtures, validFixtures } from "../helpers/fixtures.js";
import { assertError, filesUnder, upload, uploadBytes } from "../helpers/http.js";

describe("POST /image/", () => {
  test("stores the upload byte-for-byte and answers 201 with Location and the image object", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    const source = fixture("valid/photo.jpg").path;
    const response = await upload(app, key, source, "holiday.jpg");
    assert.equal(response.statusCode, 201, response.body);
    assert.equal(response.headers.location, "/image/holiday.jpg/");
    const image = response.json();
    assert.equal(image.name, "holiday.jpg");
    assert.equal(image.image_name, "holiday.jpg");
    assert.equal(image.url, "http://localhost:80/image/holiday.jpg/");
    assert.equal(image.content_type, "image/jpeg");
    assert.equal(image.format, "jpeg");
    assert.equal(image.width, 1600);
    assert.equal(image.height, 1200);
    assert.equal(image.pages, 1);
    const bytes = await readFile(source);
    assert.equal(image.bytes, bytes.length);
    assert.match(image.sha256, /^[0-9a-f]{64}$/);
    assert.ok(Date.parse(image.created_at) > 0 && image.created_at === image.updated_at);

    const fetched = await app.inject({ method: "GET", url: "/image/holiday.jpg/", headers: auth(key) });
    assert.equal(fetched.statusCode, 200);
    assert.ok(fetched.rawPayload.equals(bytes), "the stored bytes are the uploaded bytes");
  });

  for (const item of validFixtures) {
    test(`accepts ${item.name} and reports its real format and size`, async (t) => {
      const { app, userKey } = await buildTestApp(t);
      const response = await upload(app, await userKey(), item.path, "upload.bin");
      assert.equal(response.statusCode, 201, response.body);
      const image = response.json();
      assert.equal(image.format, item.expect.format);
      assert.equal(image.content_type, item.expect.contentType);
      assert.deepEqual([image.width, image.height, image.pages], [item.expect.width, item.expect.height, item.expect.pages]);
      assert.equal(image.has_gps, item.expect.hasGps);
    });
  }

  for (const item of refusedFixtures) {
    test(`refuses ${item.name} with ${item.expect.status} ${item.expect.code} and stores nothing`, async (t) => {
      const { app, userKey, dataDir, storedBlobs } = await buildTestApp(t);
      const key = await userKey();
      const response = await upload(app, key, item.path, "upload.png");
      assertError(response, item.expect.status, item.expect.code);
      const list = await app.inject({ method: "GET", url: "/image/", headers: auth(key) });
      assert.deepEqual(list.json(), []);
      assert.deepEqual(await storedBlobs(), []);
      assert.deepEqual(await filesUnder(join(dataDir, "tmp")), []);
    });
  }

  test("decides the format from the content, not the name or the client's content type", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const png = await readFile(fixture("valid/small.png").path);
    const response = await uploadBytes(app, await userKey(), { bytes: png, filename: "really.jpg", contentType: "image/jpeg" });
    assert.equal(response.statusCode, 201);
    assert.equal(response.json().content_type, "image/png");
  });

  test("keeps both images when a name is reused: cat.png, cat-2.png, cat-3.png", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    const names = [];
    for (let i = 0; i < 3; i += 1) {
      const response = await upload(app, key, fixture("valid/small.png").path, "cat.png");
      assert.equal(response.statusCode, 201);
      names.push(response.json().name);
    }
    assert.deepEqual(names, ["cat.png", "cat-2.png", "cat-3.png"]);
  });

  test("stores identical bytes of two users once", async (t) => {
    const { app, userKey, storedBlobs } = await buildTestApp(t);
    const path = fixture("valid/small.png").path;
    assert.equal((await upload(app, await userKey("ann"), path, "a.png")).statusCode, 201);
    assert.equal((await upload(app, await userKey("bob"), path, "b.png")).statusCode, 201);
    assert.equal((await storedBlobs()).length, 1);
  });

  test("normalises names to Unicode NFC", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    const decomposed = "cafe\u0301.png";
    const response = await upload(app, key, fixture("valid/small.png").path, decomposed);
    assert.equal(response.statusCode, 201);
    assert.equal(response.json().name, "caf\u00e9.png");
    const fetched = await app.inject({ method: "GET", url: `/image/${encodeURIComponent(decomposed)}/`, headers: auth(key) });
    assert.equal(fetched.statusCode, 200);
  });

  const badNames: Array<[string, string]> = [
    ["control character", "a\u0001b.png"],
    ["bidirectional override", "cat\u202egnp.exe"],
    ["dot-dot", "..png.."],
    ["dot", "."],
    ["over 255 bytes", `${"é".repeat(128)}.png`],
    ["trailing space", "cat.png "],
  ];
  for (const [why, name] of badNames) {
    test(`refuses a file name with a ${why} (400 invalid_name)`, async (t) => {
      const { app, userKey } = await buildTestApp(t);
      assertError(await upload(app, await userKey(), fixture("valid/small.png").path, name), 400, "invalid_name");
    });
  }

  test("drops the directories of an uploaded file name, as the original did", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    const path = fixture("valid/small.png").path;
    assert.equal((await upload(app, key, path, "../../etc/cat.png")).json().name, "cat.png");
    assert.equal((await upload(app, key, path, "C:\\Users\\me\\dog.png")).json().name, "dog.png");
  });

  test("refuses an upload over the byte limit with 413 while streaming, leaving no file", async (t) => {
    const { app, userKey, dataDir } = await buildTestApp(t, { IMGVAULT_MAX_UPLOAD_BYTES: String(64 * 1024) });
    const big = await bigFile(1024 * 1024, { head: await readFile(fixture("valid/small.png").path) });
    t.after(() => big.remove());
    const response = await upload(app, await userKey(), big.path, "big.png");
    assertError(response, 413, "payload_too_large");
    assert.deepEqual(await filesUnder(join(dataDir, "tmp")), []);
  });

  test("enforces a configured pixel limit from the header (413 too_many_pixels)", async (t) => {
    const { app, userKey } = await buildTestApp(t, { IMGVAULT_MAX_PIXELS: "1000000" });
    assertError(await upload(app, await userKey(), fixture("valid/photo.jpg").path, "photo.jpg"), 413, "too_many_pixels");
  });

  test("answers 400 when the image field is missing, doubled, or a plain text field", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    const png = await readFile(fixture("valid/small.png").path);
    const other = await multipart([{ field: "picture", bytes: png, filename: "a.png" }]);
    assertError(await app.inject({ method: "POST", url: "/image/", headers: { ...auth(key), ...other.headers }, payload: other.payload }), 400, "missing_image_field");
    const doubled = await multipart([{ bytes: png, filename: "a.png" }, { bytes: png, filename: "b.png" }]);
    assertError(await app.inject({ method: "POST", url: "/image/", headers: { ...auth(key), ...doubled.headers }, payload: doubled.payload }), 400, "duplicate_image_field");
    const textField = await multipart([], { image: "not a file" });
    assertError(await app.inject({ method: "POST", url: "/image/", headers: { ...auth(key), ...textField.headers }, payload: textField.payload }), 400, "missing_image_field");
  });

  test("answers 415 to a body that is not multipart, and 400 to a multipart body that ends early", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    const json = await app.inject({ method: "POST", url: "/image/", headers: auth(key), payload: { image: "x" } });
    assertError(json, 415, "unsupported_content_type");
    const body = await multipart([{ bytes: await readFile(fixture("valid/small.png").path), filename: "a.png" }]);
    const cut = await app.inject({
      method: "POST",
      url: "/image/",
      headers: { ...auth(key), ...body.headers },
      payload: body.payload.subarray(0, body.payload.length - 40),
    });
    assertError(cut, 400, "malformed_multipart");
  });
});
