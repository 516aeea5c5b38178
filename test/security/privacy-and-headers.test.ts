import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, test } from "node:test";
import exifReader from "exif-reader";
import type { FastifyInstance } from "fastify";
import sharp from "sharp";
import { auth, buildTestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { assertError, upload } from "../helpers/http.js";

const gpsJpeg = fixture("valid/exif-orientation6-gps.jpg").path;

async function stored(app: FastifyInstance, key: string, name: string): Promise<Buffer> {
  const response = await app.inject({ method: "GET", url: `/image/${encodeURIComponent(name)}/`, headers: auth(key) });
  assert.equal(response.statusCode, 200);
  return response.rawPayload;
}

describe("?strip= on uploads", () => {
  test("without strip the original is stored byte-for-byte and reports has_gps: true", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    const response = await upload(app, key, gpsJpeg, "walk.jpg");
    assert.equal(response.statusCode, 201);
    assert.equal(response.json().has_gps, true);
    assert.ok((await stored(app, key, "walk.jpg")).equals(await readFile(gpsJpeg)));
  });

  test("strip=gps removes the position, applies the orientation and keeps the camera tags", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    const response = await upload(app, key, gpsJpeg, "walk.jpg", { url: "/image/?strip=gps" });
    assert.equal(response.statusCode, 201, response.body);
    const image = response.json();
    assert.equal(image.has_gps, false);
    assert.equal(image.format, "jpeg");
    assert.deepEqual([image.width, image.height], [48, 64], "stored 64×48 with orientation 6: now upright 48×64");

    const bytes = await stored(app, key, "walk.jpg");
    assert.equal(image.bytes, bytes.length);
    const metadata = await sharp(bytes).metadata();
    assert.deepEqual([metadata.width, metadata.height], [48, 64]);
    assert.ok(metadata.orientation === undefined || metadata.orientation === 1);
    assert.ok(metadata.exif, "the other EXIF tags stay");
    const exif = exifReader(metadata.exif);
    assert.equal(exif.GPSInfo, undefined);
    assert.equal(exif.Image?.GPSInfo, undefined);
    assert.equal(exif.Image?.Make, "imgvault");
    assert.equal(exif.Image?.Model, "fixture camera");
    assert.equal(bytes.includes(Buffer.from("GPS")), false);
  });

  test("strip=all removes every EXIF and XMP block", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    const photo = await upload(app, key, gpsJpeg, "walk.jpg", { url: "/image/?strip=all" });
    assert.equal(photo.statusCode, 201);
    assert.equal(photo.json().has_gps, false);
    const walk = await sharp(await stored(app, key, "walk.jpg")).metadata();
    assert.equal(walk.exif, undefined);
    assert.deepEqual([walk.width, walk.height], [48, 64]);

    assert.ok((await sharp(fixture("valid/xmp.jpg").path).metadata()).xmp, "the fixture carries XMP");
    assert.equal((await upload(app, key, fixture("valid/xmp.jpg").path, "xmp.jpg", { url: "/image/?strip=all" })).statusCode, 201);
    assert.equal((await sharp(await stored(app, key, "xmp.jpg")).metadata()).xmp, undefined);
  });

  test("keeps the format, and an animation stays animated", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    for (const name of ["valid/animated.gif", "valid/animated.webp", "valid/alpha.png", "valid/still.avif", "valid/three-pages.tiff"]) {
      const item = fixture(name);
      assert.equal(item.expect.outcome, "valid");
      if (item.expect.outcome !== "valid") continue;
      const response = await upload(app, key, item.path, name.slice("valid/".length), { url: "/image/?strip=all" });
      assert.equal(response.statusCode, 201, `${name}: ${response.body}`);
      const image = response.json();
      assert.deepEqual(
        [image.format, image.width, image.height, image.pages],
        [item.expect.format, item.expect.width, item.expect.height, item.expect.pages],
        name,
      );
    }
  });

  test("PATCH ?strip=gps stores the replacement cleaned; strip without a file is refused", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    await upload(app, key, fixture("valid/small.png").path, "pic.jpg");
    const response = await upload(app, key, gpsJpeg, "new.jpg", { method: "PATCH", url: "/image/pic.jpg/?strip=gps" });
    assert.equal(response.statusCode, 200, response.body);
    assert.equal(response.json().has_gps, false);
    const exif = (await sharp(await stored(app, key, "pic.jpg")).metadata()).exif;
    assert.equal(exif && exifReader(exif).GPSInfo, undefined);

    const { multipart } = await import("../helpers/app.js");
    const renameOnly = await multipart([], { name: "other.jpg" });
    const refused = await app.inject({
      method: "PATCH",
      url: "/image/pic.jpg/?strip=gps",
      headers: { ...auth(key), ...renameOnly.headers },
      payload: renameOnly.payload,
    });
    assertError(refused, 400, "invalid_parameter");
    assert.equal((await stored(app, key, "pic.jpg")).length > 0, true, "nothing was renamed");
  });

  test("an unknown strip value is refused with 400 and nothing is stored", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    assertError(await upload(app, key, gpsJpeg, "walk.jpg", { url: "/image/?strip=everything" }), 400, "validation_failed");
    assert.deepEqual((await app.inject({ method: "GET", url: "/image/", headers: auth(key) })).json(), []);
  });
});

describe("security headers", () => {
  test("every response carries nosniff; image responses also CSP and CORP", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    await upload(app, key, fixture("valid/small.png").path, "a.png");
    const responses = [
      await app.inject({ method: "GET", url: "/image/a.png/", headers: auth(key) }),
      await app.inject({ method: "GET", url: "/image/", headers: auth(key) }),
      await app.inject({ method: "GET", url: "/image/missing.png/", headers: auth(key) }),
      await app.inject({ method: "GET", url: "/image/" }),
      await app.inject({ method: "GET", url: "/nowhere" }),
      await app.inject({ method: "GET", url: "/healthz" }),
      await app.inject({ method: "GET", url: "/openapi.json" }),
      await app.inject({ method: "POST", url: "/api/token/", payload: { username: "x", password: "y" } }),
    ];
    for (const response of responses) assert.equal(response.headers["x-content-type-options"], "nosniff", response.body.slice(0, 80));
    const image = responses[0]!;
    assert.equal(image.headers["content-security-policy"], "default-src 'none'; sandbox");
    assert.equal(image.headers["cross-origin-resource-policy"], "same-site");
  });

  test("the image headers are configurable, and can be left out", async (t) => {
    const custom = await buildTestApp(t, { IMGVAULT_IMAGE_CSP: "default-src 'none'", IMGVAULT_IMAGE_CORP: "cross-origin" });
    const key = await custom.userKey();
    await upload(custom.app, key, fixture("valid/small.png").path, "a.png");
    const response = await custom.app.inject({ method: "GET", url: "/image/a.png/", headers: auth(key) });
    assert.equal(response.headers["content-security-policy"], "default-src 'none'");
    assert.equal(response.headers["cross-origin-resource-policy"], "cross-origin");

    const off = await buildTestApp(t, { IMGVAULT_IMAGE_CSP: "", IMGVAULT_IMAGE_CORP: "" });
    const offKey = await off.userKey();
    await upload(off.app, offKey, fixture("valid/small.png").path, "a.png");
    const bare = await off.app.inject({ method: "GET", url: "/image/a.png/", headers: auth(offKey) });
    assert.equal(bare.statusCode, 200);
    assert.equal(bare.headers["content-security-policy"], undefined);
    assert.equal(bare.headers["cross-origin-resource-policy"], undefined);
  });

  test("an error naming a hostile name is JSON, escaped, and never markup", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    const hostile = 'x"><img src=x onerror=alert(1)>\u2028.png';
    assert.equal((await upload(app, key, fixture("valid/small.png").path, "other.png")).statusCode, 201);
    assert.equal((await upload(app, key, fixture("valid/small.png").path, "plain.png")).statusCode, 201);
    // A form field carries the quote as is (a multipart file name would arrive as %22).
    const named = await upload(app, key, fixture("valid/small.png").path, "z.png", { method: "PATCH", url: "/image/other.png/", fields: { name: hostile } });
    assert.equal(named.json().name, hostile);
    const response = await upload(app, key, fixture("valid/small.png").path, "y.png", {
      method: "PATCH",
      url: "/image/plain.png/",
      fields: { name: hostile },
    });
    assertError(response, 409, "name_taken");
    assert.match(String(response.headers["content-type"]), /^application\/json; charset=utf-8$/);
    assert.equal(response.headers["x-content-type-options"], "nosniff");
    const message = response.json<{ error: { message: string } }>().error.message;
    assert.ok(message.includes(hostile), "the message names the name exactly");
    assert.ok(response.body.includes('x\\"><img'), "the quote is escaped, so the JSON string cannot be closed early");
    assert.equal(response.body.includes('x"><img'), false);
  });
});
