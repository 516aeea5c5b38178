import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, test } from "node:test";
import type { LightMyRequestResponse } from "fastify";
import { auth, buildTestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { assertError, upload } from "../helpers/http.js";

const png = fixture("valid/small.png").path;
const jpeg = fixture("valid/small.jpg").path;
const gif = fixture("valid/animated.gif").path;

describe("GET /image/", () => {
  test("lists the caller's images newest first, paginated with Link and X-Total-Count", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    for (const name of ["a.png", "b.png", "c.png", "d.png", "e.png"]) assert.equal((await upload(app, key, png, name)).statusCode, 201);
    const seen: string[] = [];
    let url: string | undefined = "/image/?limit=2";
    let pages = 0;
    while (url) {
      const response: LightMyRequestResponse = await app.inject({ method: "GET", url, headers: auth(key) });
      assert.equal(response.statusCode, 200);
      assert.equal(response.headers["x-total-count"], "5");
      seen.push(...response.json<Array<{ name: string }>>().map((image) => image.name));
      const link = response.headers.link as string | undefined;
      const next = link === undefined ? undefined : /^<([^>]+)>; rel="next"$/.exec(link)?.[1];
      url = next?.replace(/^https?:\/\/[^/]+/, "");
      pages += 1;
    }
    assert.deepEqual(seen, ["e.png", "d.png", "c.png", "b.png", "a.png"]);
    assert.equal(pages, 3);
  });

  test("an empty list is [] with a total of 0", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const response = await app.inject({ method: "GET", url: "/image/", headers: auth(await userKey()) });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), []);
    assert.equal(response.headers["x-total-count"], "0");
    assert.equal(response.headers.link, undefined);
  });

  test("refuses a forged cursor and out-of-range limits with 400", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    assertError(await app.inject({ method: "GET", url: "/image/?cursor=garbage", headers: auth(key) }), 400, "invalid_cursor");
    assertError(await app.inject({ method: "GET", url: "/image/?limit=1001", headers: auth(key) }), 400, "validation_failed");
    assertError(await app.inject({ method: "GET", url: "/image/?limit=0", headers: auth(key) }), 400, "validation_failed");
  });

  test("shows each user only their own images", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const ann = await userKey("ann");
    const bob = await userKey("bob");
    await upload(app, ann, png, "ann.png");
    await upload(app, bob, png, "bob.png");
    const list = await app.inject({ method: "GET", url: "/image/", headers: auth(bob) });
    assert.deepEqual(list.json<Array<{ name: string }>>().map((image) => image.name), ["bob.png"]);
  });
});

describe("GET /image/<name>/", () => {
  test("renders the bytes with type, length, disposition and nosniff, with or without the trailing slash", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    await upload(app, key, gif, "dancing cat.gif");
    const bytes = await readFile(gif);
    for (const url of ["/image/dancing%20cat.gif/", "/image/dancing%20cat.gif"]) {
      const response = await app.inject({ method: "GET", url, headers: auth(key) });
      assert.equal(response.statusCode, 200);
      assert.equal(response.headers["content-type"], "image/gif");
      assert.equal(response.headers["content-length"], String(bytes.length));
      assert.equal(response.headers["content-disposition"], `inline; filename="dancing cat.gif"; filename*=UTF-8''dancing%20cat.gif`);
      assert.equal(response.headers["x-content-type-options"], "nosniff");
      assert.ok(response.rawPayload.equals(bytes));
    }
  });

  test("streams large images from storage when they do not fit the memory cache", async (t) => {
    const { app, userKey } = await buildTestApp(t, { IMGVAULT_HOT_CACHE_BYTES: "0" });
    const key = await userKey();
    const photo = fixture("valid/photo.jpg").path;
    await upload(app, key, photo, "photo.jpg");
    const response = await app.inject({ method: "GET", url: "/image/photo.jpg/", headers: auth(key) });
    assert.equal(response.statusCode, 200);
    assert.ok(response.rawPayload.equals(await readFile(photo)));
  });

  test("answers another user's image exactly as a missing one", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const ann = await userKey("ann");
    const bob = await userKey("bob");
    await upload(app, ann, png, "secret.png");
    const theirs = await app.inject({ method: "GET", url: "/image/secret.png/", headers: auth(bob) });
    const missing = await app.inject({ method: "GET", url: "/image/nothing.png/", headers: auth(bob) });
    assertError(theirs, 404, "image_not_found");
    assert.equal(theirs.body, missing.body);
  });
});

describe("PATCH /image/<name>/", () => {
  test("replaces the bytes; the metadata follows the new content", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    const created = (await upload(app, key, png, "pic.png")).json();
    const response = await upload(app, key, jpeg, "whatever.jpg", { method: "PATCH", url: "/image/pic.png/" });
    assert.equal(response.statusCode, 200, response.body);
    const updated = response.json();
    assert.equal(updated.name, "pic.png");
    assert.equal(updated.format, "jpeg");
    assert.equal(updated.content_type, "image/jpeg");
    assert.notEqual(updated.sha256, created.sha256);
    assert.equal(updated.created_at, created.created_at);
    const fetched = await app.inject({ method: "GET", url: "/image/pic.png", headers: auth(key) });
    assert.ok(fetched.rawPayload.equals(await readFile(jpeg)));
    assert.equal(fetched.headers["content-type"], "image/jpeg");
  });

  test("renames with the field name, and replaces and renames at once", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    await upload(app, key, png, "old.png");
    const renamed = await upload(app, key, png, "x.png", { method: "PATCH", url: "/image/old.png/", fields: { name: "new.png" } });
    assert.equal(renamed.statusCode, 200);
    assert.equal(renamed.json().name, "new.png");
    assertError(await app.inject({ method: "GET", url: "/image/old.png/", headers: auth(key) }), 404, "image_not_found");
    const both = await upload(app, key, jpeg, "y.jpg", { method: "PATCH", url: "/image/new.png/", fields: { name: "newer.jpg" } });
    assert.equal(both.json().name, "newer.jpg");
    assert.equal(both.json().format, "jpeg");
  });

  test("refuses a rename onto an existing name with 409 and changes nothing", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    await upload(app, key, png, "one.png");
    await upload(app, key, gif, "two.gif");
    const response = await upload(app, key, jpeg, "x.jpg", { method: "PATCH", url: "/image/one.png/", fields: { name: "two.gif" } });
    assertError(response, 409, "name_taken");
    const one = await app.inject({ method: "GET", url: "/image/one.png/", headers: auth(key) });
    assert.ok(one.rawPayload.equals(await readFile(png)), "the content was not replaced either");
  });

  test("keeps the old bytes when the new ones are refused", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    await upload(app, key, png, "keep.png");
    const response = await upload(app, key, fixture("hostile/truncated-scan.jpg").path, "bad.jpg", { method: "PATCH", url: "/image/keep.png/" });
    assertError(response, 422, "corrupt_image");
    const fetched = await app.inject({ method: "GET", url: "/image/keep.png/", headers: auth(key) });
    assert.ok(fetched.rawPayload.equals(await readFile(png)));
  });

  test("answers 404 for a missing image and 400 when there is nothing to change", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    assertError(await upload(app, key, png, "a.png", { method: "PATCH", url: "/image/missing.png/" }), 404, "image_not_found");
    await upload(app, key, png, "a.png");
    const empty = await upload(app, key, png, "a.png", { method: "PATCH", url: "/image/a.png/", fields: {} });
    assert.equal(empty.statusCode, 200, "a file alone is a valid replacement");
    const { multipart } = await import("../helpers/app.js");
    const nothing = await multipart([], { comment: "hi" });
    assertError(
      await app.inject({ method: "PATCH", url: "/image/a.png/", headers: { ...auth(key), ...nothing.headers }, payload: nothing.payload }),
      400,
      "missing_image_field",
    );
  });
});

describe("DELETE /image/<name>/", () => {
  test("answers 200 with the deleted image, then 404; unreferenced bytes are removed", async (t) => {
    const { app, userKey, storedBlobs } = await buildTestApp(t);
    const key = await userKey();
    const created = (await upload(app, key, png, "gone.png")).json();
    const response = await app.inject({ method: "DELETE", url: "/image/gone.png", headers: auth(key) });
    assert.equal(response.statusCode, 200);
    assert.deepEqual(response.json(), created);
    assertError(await app.inject({ method: "GET", url: "/image/gone.png/", headers: auth(key) }), 404, "image_not_found");
    assertError(await app.inject({ method: "DELETE", url: "/image/gone.png/", headers: auth(key) }), 404, "image_not_found");
    await app.services.images.sweep();
    assert.deepEqual(await storedBlobs(), []);
  });

  test("keeps bytes another image still uses", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const ann = await userKey("ann");
    const bob = await userKey("bob");
    await upload(app, ann, png, "a.png");
    await upload(app, bob, png, "b.png");
    await app.inject({ method: "DELETE", url: "/image/a.png/", headers: auth(ann) });
    await app.services.images.sweep();
    const fetched = await app.inject({ method: "GET", url: "/image/b.png/", headers: auth(bob) });
    assert.equal(fetched.statusCode, 200);
    assert.ok(fetched.rawPayload.equals(await readFile(png)));
  });

  test("cannot delete another user's image", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const ann = await userKey("ann");
    const bob = await userKey("bob");
    await upload(app, ann, png, "a.png");
    assertError(await app.inject({ method: "DELETE", url: "/image/a.png/", headers: auth(bob) }), 404, "image_not_found");
    assert.equal((await app.inject({ method: "GET", url: "/image/a.png/", headers: auth(ann) })).statusCode, 200);
  });
});
