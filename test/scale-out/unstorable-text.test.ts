/**
 * PostgreSQL text cannot hold U+0000 (it rejects the whole query), where SQLite stores it. A name
 * or username holding one can never exist, so the answers are the embedded ones: 404 for an
 * image, 400 invalid_credentials for a login, 400 invalid_name for an upload; never a 500.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { auth, buildTestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { assertError, upload } from "../helpers/http.js";
import { createScaleOutBackend, scaleOutSkipReason } from "../helpers/scale-out.js";

describe("U+0000 in names on PostgreSQL", { skip: scaleOutSkipReason }, () => {
  test("answers as the embedded configuration does", async (t) => {
    const backend = await createScaleOutBackend("nul");
    t.after(() => backend.dispose());
    const { app, userKey } = await buildTestApp(t, backend.env);
    const key = await userKey("nul-owner");
    assert.equal((await upload(app, key, fixture("valid/small.png").path, "a.png")).statusCode, 201);
    for (const method of ["GET", "DELETE"] as const) {
      assertError(await app.inject({ method, url: "/image/a%00.png/", headers: auth(key) }), 404, "image_not_found");
    }
    assertError(await upload(app, key, fixture("valid/small.png").path, "b.png", { method: "PATCH", url: "/image/a%00.png/" }), 404, "image_not_found");
    assertError(await upload(app, key, fixture("valid/small.png").path, "b\u0000.png"), 400, "invalid_name");
    assertError(await upload(app, key, fixture("valid/small.png").path, "x", { method: "PATCH", url: "/image/a.png/", fields: { name: "c\u0000.png" } }), 400, "invalid_name");
    assertError(
      await app.inject({ method: "POST", url: "/api/token/", payload: { username: "nul-owner\u0000", password: "correct horse battery staple" } }),
      400,
      "invalid_credentials",
    );
    assert.equal((await app.inject({ method: "GET", url: "/image/a.png/", headers: auth(key) })).statusCode, 200, "the real image is untouched");
  });
});
