/**
 * A backend that goes away answers 503 with Retry-After (never a 500), and the node recovers
 * when it returns, without a restart: PostgreSQL refusing connections or killing them
 * (pg_terminate_backend, as a restart or failover does), and the S3 engine unreachable (a TCP
 * relay in front of the real engine, cut and restored; a port nobody listens on).
 */
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer } from "node:net";
import { describe, test, type TestContext } from "node:test";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { auth, buildTestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { upload } from "../helpers/http.js";
import { Relay } from "../helpers/tcp-relay.js";
import { allowConnections, createScaleOutBackend, scaleOutSkipReason, terminateConnections, type ScaleOutBackend } from "../helpers/scale-out.js";

const png = fixture("valid/small.png").path;
const jpeg = fixture("valid/small.jpg").path;

function assertUnavailable(response: LightMyRequestResponse, code: string, what: string): void {
  assert.equal(response.statusCode, 503, `${what}: expected 503 ${code}, got ${response.statusCode}: ${response.body}`);
  assert.equal(response.json<{ error: { code: string } }>().error.code, code, what);
  assert.match(String(response.headers["retry-after"]), /^\d+$/, `${what} carries Retry-After`);
}

async function freshBackend(t: TestContext): Promise<ScaleOutBackend> {
  const backend = await createScaleOutBackend("outage");
  t.after(() => backend.dispose());
  return backend;
}

/** Settings that make every request reach the backends: no key cache, no in-memory image cache. */
const uncached = { IMGVAULT_KEY_CACHE_MS: "0", IMGVAULT_HOT_CACHE_BYTES: "0" };

async function get(app: FastifyInstance, key: string, url: string): Promise<LightMyRequestResponse> {
  return app.inject({ method: "GET", url, headers: auth(key) });
}

describe("backends that go away and come back", { skip: scaleOutSkipReason }, () => {
  test("PostgreSQL refusing connections: 503 database_unavailable with Retry-After, then served again once it admits them", async (t) => {
    const backend = await freshBackend(t);
    const { app, userKey } = await buildTestApp(t, { ...backend.env, ...uncached });
    const key = await userKey();
    assert.equal((await upload(app, key, png, "kept.png")).statusCode, 201);

    // A restart or failover: every open connection is killed and new ones are refused for a while.
    await allowConnections(backend.database.name, false);
    try {
      await terminateConnections(backend.database.name);
      assertUnavailable(await get(app, key, "/image/kept.png/"), "database_unavailable", "GET");
      assertUnavailable(await get(app, key, "/image/"), "database_unavailable", "list");
      assertUnavailable(await upload(app, key, jpeg, "new.jpg"), "database_unavailable", "POST");
      assertUnavailable(await app.inject({ method: "DELETE", url: "/image/kept.png/", headers: auth(key) }), "database_unavailable", "DELETE");
    } finally {
      await allowConnections(backend.database.name, true);
    }
    const served = await get(app, key, "/image/kept.png/");
    assert.equal(served.statusCode, 200, served.body);
    assert.ok(served.rawPayload.equals(await readFile(png)));
    assert.equal((await upload(app, key, jpeg, "new.jpg")).statusCode, 201);
    assert.deepEqual((await get(app, key, "/image/")).json<Array<{ name: string }>>().map((image) => image.name).sort(), ["kept.png", "new.jpg"]);
  });

  test("PostgreSQL killing the pool's connections: no request fails with anything but 503, and the pool reconnects by itself", async (t) => {
    const backend = await freshBackend(t);
    const { app, userKey } = await buildTestApp(t, { ...backend.env, ...uncached, DATABASE_POOL_SIZE: "4" });
    const key = await userKey();
    assert.equal((await upload(app, key, png, "kept.png")).statusCode, 201);
    // Fill the pool with open connections, then kill them all from the server side.
    await Promise.all(Array.from({ length: 8 }, () => get(app, key, "/image/")));
    assert.ok((await terminateConnections(backend.database.name)) > 0, "the pool had connections to kill");

    // A dead connection may still be handed out once before the pool notices; each such request
    // fails cleanly, and the pool never holds more than its size of them.
    let served: LightMyRequestResponse | undefined;
    for (let attempt = 0; attempt <= 4 && served === undefined; attempt += 1) {
      const response = await get(app, key, "/image/kept.png/");
      if (response.statusCode === 200) served = response;
      else assertUnavailable(response, "database_unavailable", `GET after the kill, attempt ${attempt + 1}`);
    }
    assert.ok(served, "served again within the pool's size of attempts");
    assert.ok(served.rawPayload.equals(await readFile(png)));
    assert.equal((await upload(app, key, jpeg, "after.jpg")).statusCode, 201);
  });

  test("the S3 engine unreachable: 503 storage_unavailable with Retry-After for bytes, metadata still served, and all recovers", async (t) => {
    const backend = await freshBackend(t);
    const engine = new URL(backend.env.S3_ENDPOINT ?? "");
    const relay = new Relay(engine.hostname, Number(engine.port || 80));
    await relay.start();
    t.after(() => relay.cut());
    const { app, userKey } = await buildTestApp(t, { ...backend.env, ...uncached, S3_ENDPOINT: `http://127.0.0.1:${relay.port}` });
    const key = await userKey();
    assert.equal((await upload(app, key, png, "kept.png")).statusCode, 201);

    await relay.cut();
    assertUnavailable(await get(app, key, "/image/kept.png/"), "storage_unavailable", "GET of the bytes");
    assertUnavailable(await upload(app, key, jpeg, "new.jpg"), "storage_unavailable", "POST");
    const listed = await get(app, key, "/image/");
    assert.equal(listed.statusCode, 200, "the list needs only the database");
    assert.deepEqual(listed.json<Array<{ name: string }>>().map((image) => image.name), ["kept.png"]);

    await relay.start();
    const served = await get(app, key, "/image/kept.png/");
    assert.equal(served.statusCode, 200, served.body);
    assert.ok(served.rawPayload.equals(await readFile(png)));
    assert.equal((await upload(app, key, jpeg, "new.jpg")).statusCode, 201);
  });

  test("an S3 endpoint nobody listens on: uploads answer 503 storage_unavailable and store nothing", async (t) => {
    const backend = await freshBackend(t);
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
    const port = (probe.address() as { port: number }).port;
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    const { app, userKey } = await buildTestApp(t, { ...backend.env, ...uncached, S3_ENDPOINT: `http://127.0.0.1:${port}` });
    const key = await userKey();
    assertUnavailable(await upload(app, key, png, "a.png"), "storage_unavailable", "POST");
    assert.deepEqual((await get(app, key, "/image/")).json(), []);
  });
});
