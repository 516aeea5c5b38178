import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import SQLite from "better-sqlite3";
import type { FastifyInstance } from "fastify";
import { fsck } from "../../src/services/fsck.js";
import { auth, buildTestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { filesUnder, upload } from "../helpers/http.js";
import { createTestDatabase, postgresAdminUrl } from "../helpers/scale-out.js";
import { Relay } from "../helpers/tcp-relay.js";

function assertUnavailable(response: { statusCode: number; headers: Record<string, unknown>; body: string }, what: string): void {
  assert.equal(response.statusCode, 503, `${what}: expected 503, got ${response.statusCode}: ${response.body}`);
  assert.equal(JSON.parse(response.body).error.code, "database_unavailable", what);
  assert.equal(response.headers["retry-after"], "1", `${what} carries Retry-After`);
}

async function imageNames(app: FastifyInstance, key: string): Promise<string[]> {
  const response = await app.inject({ method: "GET", url: "/image/", headers: auth(key) });
  assert.equal(response.statusCode, 200, response.body);
  return response.json<Array<{ name: string }>>().map((image) => image.name).sort();
}

describe("a busy SQLite database", () => {
  test("writes answer 503 database_unavailable with Retry-After while another process holds the write lock; reads go on; all recovers without a restart", async (t) => {
    const testApp = await buildTestApp(t, { IMGVAULT_SQLITE_BUSY_TIMEOUT_MS: "50", STORAGE: "fs" });
    const { app, config } = testApp;
    if (config.database.kind !== "sqlite") {
      t.skip("SQLite-specific: this run uses PostgreSQL");
      return;
    }
    const key = await testApp.userKey("locked-out");
    assert.equal((await upload(app, key, fixture("valid/small.png").path, "kept.png")).statusCode, 201);

    // Another process (a maintenance job, a sqlite3 shell) holds the write lock and does not let go.
    const holder = new SQLite(config.database.file);
    t.after(() => holder.close());
    holder.exec("BEGIN IMMEDIATE");

    assertUnavailable(await upload(app, key, fixture("valid/small.jpg").path, "new.jpg"), "POST");
    assertUnavailable(await upload(app, key, fixture("valid/small.jpg").path, "kept.png", { method: "PATCH", url: "/image/kept.png/" }), "PATCH");
    assertUnavailable(await app.inject({ method: "DELETE", url: "/image/kept.png/", headers: auth(key) }), "DELETE");
    assertUnavailable(
      await app.inject({ method: "POST", url: "/api/token/", payload: { username: "locked-out", password: "correct horse battery staple" } }),
      "a login (it writes the new key)",
    );
    // WAL readers never wait for writers: the collection stays readable.
    const served = await app.inject({ method: "GET", url: "/image/kept.png/", headers: auth(key) });
    assert.equal(served.statusCode, 200);
    assert.ok(served.rawPayload.equals(await readFile(fixture("valid/small.png").path)));
    assert.deepEqual(await imageNames(app, key), ["kept.png"]);
    assert.deepEqual(await filesUnder(join(testApp.dataDir, "tmp")), [], "refused uploads leave no staged file");

    holder.exec("ROLLBACK");
    assert.equal((await upload(app, key, fixture("valid/small.jpg").path, "new.jpg")).statusCode, 201);
    assert.equal((await app.inject({ method: "DELETE", url: "/image/kept.png/", headers: auth(key) })).statusCode, 200);
    assert.deepEqual(await imageNames(app, key), ["new.jpg"]);
    const report = await fsck(app.services);
    assert.deepEqual(
      report.problems.filter((problem) => problem.kind !== "temp_file"),
      [],
      "nothing references missing bytes",
    );
  });
});

describe("an unreachable PostgreSQL", () => {
  test("every request that needs the database answers 503 database_unavailable with Retry-After, and it recovers without a restart", async (t) => {
    const database = await createTestDatabase();
    t.after(() => database.drop());
    const target = new URL(postgresAdminUrl);
    const relay = new Relay(target.hostname, Number(target.port || 5432));
    await relay.start();
    t.after(() => relay.cut());
    const url = new URL(database.url);
    url.hostname = "127.0.0.1";
    url.port = String(relay.port);

    const testApp = await buildTestApp(t, {
      DATABASE_URL: url.toString(),
      DATABASE_CONNECT_TIMEOUT_MS: "2000",
      STORAGE: "fs",
      IMGVAULT_KEY_CACHE_MS: "0",
    });
    const { app } = testApp;
    const key = await testApp.userKey();
    assert.equal((await upload(app, key, fixture("valid/small.png").path, "kept.png")).statusCode, 201);

    await relay.cut();
    assertUnavailable(await app.inject({ method: "GET", url: "/image/kept.png/", headers: auth(key) }), "GET");
    assertUnavailable(await app.inject({ method: "GET", url: "/image/", headers: auth(key) }), "list");
    assertUnavailable(await upload(app, key, fixture("valid/small.jpg").path, "new.jpg"), "POST");
    assertUnavailable(await app.inject({ method: "POST", url: "/api/token/", payload: { username: "nobody", password: "x" } }), "login");

    await relay.start();
    const served = await app.inject({ method: "GET", url: "/image/kept.png/", headers: auth(key) });
    assert.equal(served.statusCode, 200, served.body);
    assert.ok(served.rawPayload.equals(await readFile(fixture("valid/small.png").path)));
    assert.equal((await upload(app, key, fixture("valid/small.jpg").path, "new.jpg")).statusCode, 201);
    assert.deepEqual(await imageNames(app, key), ["kept.png", "new.jpg"]);
  });
});
