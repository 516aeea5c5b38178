import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, test } from "node:test";
import { auth, buildTestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { assertError, upload } from "../helpers/http.js";
import { postgresContentsAsText } from "../helpers/scale-out.js";

describe("authentication", () => {
  test("every image call without a key is 401 with WWW-Authenticate and a JSON error", async (t) => {
    const { app } = await buildTestApp(t);
    const calls = [
      { method: "GET", url: "/image/" },
      { method: "POST", url: "/image/" },
      { method: "GET", url: "/image/a.png/" },
      { method: "PATCH", url: "/image/a.png/" },
      { method: "DELETE", url: "/image/a.png/" },
    ] as const;
    for (const call of calls) {
      const response = await app.inject(call);
      assertError(response, 401, "unauthorized");
      assert.match(String(response.headers["www-authenticate"]), /^Token/);
    }
  });

  test("accepts Token in any case and Bearer; refuses unknown keys and other schemes", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    for (const header of [`Token ${key}`, `token ${key}`, `TOKEN ${key}`, `Bearer ${key}`]) {
      assert.equal((await app.inject({ method: "GET", url: "/image/", headers: { authorization: header } })).statusCode, 200, header);
    }
    for (const header of [`Basic ${key}`, `Token`, `Token ivk_nottherightkey`, key]) {
      assertError(await app.inject({ method: "GET", url: "/image/", headers: { authorization: header } }), 401, "unauthorized");
    }
  });

  test("the database never holds an access key in plain text", async (t) => {
    const { app, userKey, config } = await buildTestApp(t);
    const key = await userKey();
    await app.services.accounts.ensureUser("plain", "pw");
    const token = (await app.inject({ method: "POST", url: "/api/token/", payload: { username: "plain", password: "pw" } })).json().token as string;
    await app.close();
    const { database } = config;
    const contents =
      database.kind === "sqlite"
        ? [".sqlite", ".sqlite-wal"].map((suffix) => ({ file: database.file.replace(/\.sqlite$/, suffix), read: (file: string) => readFile(file).catch(() => Buffer.alloc(0)) }))
        : [{ file: "the PostgreSQL database", read: async () => Buffer.from(await postgresContentsAsText(database.url)) }];
    for (const { file, read } of contents) {
      const bytes = await read(file);
      for (const secret of [key, token]) {
        assert.equal(bytes.includes(secret), false, `${file} contains a key`);
        assert.equal(bytes.includes(secret.slice(4)), false, `${file} contains a key body`);
      }
    }
  });
});

describe("POST /api/token/", () => {
  test("exchanges form-urlencoded or JSON credentials for a key that works at once", async (t) => {
    const { app } = await buildTestApp(t);
    await app.services.accounts.ensureUser("alice", "wonderland");
    const form = await app.inject({
      method: "POST",
      url: "/api/token/",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      payload: "username=alice&password=wonderland",
    });
    assert.equal(form.statusCode, 200);
    const { token } = form.json<{ token: string }>();
    assert.match(token, /^ivk_[A-Za-z0-9_-]{32}$/);
    assert.equal((await upload(app, token, fixture("valid/small.png").path, "a.png")).statusCode, 201);
    const json = await app.inject({ method: "POST", url: "/api/token", payload: { username: "alice", password: "wonderland" } });
    assert.equal(json.statusCode, 200);
    assert.notEqual(json.json().token, token);
  });

  test("refuses wrong or missing credentials with 400 and no token", async (t) => {
    const { app } = await buildTestApp(t);
    await app.services.accounts.ensureUser("alice", "wonderland");
    const attempts = [
      "username=alice&password=wrong",
      "username=nobody&password=wonderland",
      "username=alice",
      "password=wonderland",
      "",
    ];
    for (const payload of attempts) {
      const response = await app.inject({
        method: "POST",
        url: "/api/token/",
        headers: { "content-type": "application/x-www-form-urlencoded" },
        payload,
      });
      assertError(response, 400, "invalid_credentials");
      assert.equal("token" in response.json(), false);
    }
  });
});

describe("the rest of the surface", () => {
  test("unknown routes are 404 JSON and wrong methods 405 JSON with Allow", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const key = await userKey();
    assertError(await app.inject({ method: "GET", url: "/nothing/here" }), 404, "not_found");
    const put = await app.inject({ method: "PUT", url: "/image/a.png/", headers: auth(key) });
    assertError(put, 405, "method_not_allowed");
    assert.equal(put.headers.allow, "GET, HEAD, PATCH, DELETE");
    const del = await app.inject({ method: "DELETE", url: "/image/", headers: auth(key) });
    assertError(del, 405, "method_not_allowed");
  });

  test("serves an OpenAPI 3.1 document generated from the routes, interactive docs and a health check", async (t) => {
    const { app } = await buildTestApp(t);
    const openapi = await app.inject({ method: "GET", url: "/openapi.json" });
    assert.equal(openapi.statusCode, 200);
    const document = openapi.json();
    assert.equal(document.openapi, "3.1.0");
    for (const path of ["/image/", "/image/{name}/", "/api/token/"]) assert.ok(document.paths[path], `${path} documented`);
    assert.ok(document.paths["/image/"].post.requestBody.content["multipart/form-data"]);
    assert.ok(document.components.schemas.Image);
    const docs = await app.inject({ method: "GET", url: "/docs" });
    assert.ok([200, 302].includes(docs.statusCode));
    const health = await app.inject({ method: "GET", url: "/healthz" });
    assert.deepEqual(health.json(), { status: "ok" });
  });

  test("returns the request id it was given, or a new one", async (t) => {
    const { app } = await buildTestApp(t);
    const given = await app.inject({ method: "GET", url: "/healthz", headers: { "x-request-id": "abc-123" } });
    assert.equal(given.headers["x-request-id"], "abc-123");
    const fresh = await app.inject({ method: "GET", url: "/healthz" });
    assert.match(String(fresh.headers["x-request-id"]), /^[0-9a-f-]{36}$/);
  });
});
