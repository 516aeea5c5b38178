import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { auth, buildTestApp } from "../helpers/app.js";
import { FaultyBlobStore } from "../helpers/faulty-blob-store.js";
import { fixture } from "../helpers/fixtures.js";
import { upload } from "../helpers/http.js";
import { createTestDatabase, postgresAdminUrl } from "../helpers/scale-out.js";
import { Relay } from "../helpers/tcp-relay.js";

/** The value of one sample of the Prometheus text exposition, e.g. `name{a="b"}`; undefined when absent. */
function sample(text: string, series: string): number | undefined {
  for (const line of text.split("\n")) {
    if (line.startsWith(`${series} `)) return Number(line.slice(series.length + 1));
  }
  return undefined;
}

describe("health", () => {
  test("/healthz and /readyz answer without a key while everything works", async (t) => {
    const { app } = await buildTestApp(t);
    const live = await app.inject({ method: "GET", url: "/healthz" });
    assert.equal(live.statusCode, 200);
    assert.deepEqual(live.json(), { status: "ok" });
    const ready = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(ready.statusCode, 200);
    assert.deepEqual(ready.json(), { status: "ready", checks: { database: "ok", storage: "ok" } });
  });

  test("/readyz is 503 while the blob store fails its check, and ready again once it recovers; /healthz stays 200", async (t) => {
    const root = await mkdtemp(join(tmpdir(), "imgvault-ready-"));
    t.after(() => rm(root, { recursive: true, force: true }));
    const store = new FaultyBlobStore(root);
    const { app } = await buildTestApp(t, {}, { blobs: store });
    store.fail("check", "EIO");
    const notReady = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(notReady.statusCode, 503);
    assert.equal(notReady.headers["retry-after"], "5");
    const body = notReady.json<{ error: { code: string; message: string }; checks: Record<string, string> }>();
    assert.equal(body.error.code, "service_unavailable");
    assert.deepEqual(body.checks, { database: "ok", storage: "failed" });
    assert.doesNotMatch(notReady.body, /EIO|injected/, "no internals");
    assert.equal((await app.inject({ method: "GET", url: "/healthz" })).statusCode, 200);
    store.heal();
    assert.equal((await app.inject({ method: "GET", url: "/readyz" })).statusCode, 200);
  });

  test("/readyz is 503 while PostgreSQL is unreachable, and ready again once it is back", async (t) => {
    const database = await createTestDatabase();
    t.after(() => database.drop());
    const target = new URL(postgresAdminUrl);
    const relay = new Relay(target.hostname, Number(target.port || 5432));
    await relay.start();
    t.after(() => relay.cut());
    const url = new URL(database.url);
    url.hostname = "127.0.0.1";
    url.port = String(relay.port);
    const { app } = await buildTestApp(t, { DATABASE_URL: url.toString(), DATABASE_CONNECT_TIMEOUT_MS: "1000", STORAGE: "fs" });
    assert.equal((await app.inject({ method: "GET", url: "/readyz" })).statusCode, 200);
    await relay.cut();
    const notReady = await app.inject({ method: "GET", url: "/readyz" });
    assert.equal(notReady.statusCode, 503);
    assert.deepEqual(notReady.json<{ checks: unknown }>().checks, { database: "failed", storage: "ok" });
    await relay.start();
    assert.equal((await app.inject({ method: "GET", url: "/readyz" })).statusCode, 200);
  });
});

describe("/metrics", () => {
  test("counts requests by route and status with durations, bytes in and out, images stored, cache and queue, process memory", async (t) => {
    const testApp = await buildTestApp(t);
    const { app } = testApp;
    const key = await testApp.userKey();
    const png = await readFile(fixture("valid/small.png").path);
    const created = await upload(app, key, fixture("valid/small.png").path, "a.png");
    assert.equal(created.statusCode, 201);
    for (let index = 0; index < 2; index += 1) {
      assert.equal((await app.inject({ method: "GET", url: "/image/a.png/", headers: auth(key) })).statusCode, 200);
    }
    assert.equal((await app.inject({ method: "GET", url: "/image/missing.png/", headers: auth(key) })).statusCode, 404);
    assert.equal((await app.inject({ method: "GET", url: "/no/such/route" })).statusCode, 404);

    const scrape = await app.inject({ method: "GET", url: "/metrics" });
    assert.equal(scrape.statusCode, 200);
    assert.match(String(scrape.headers["content-type"]), /^text\/plain; version=0\.0\.4/);
    const text = scrape.body;

    const get = 'method="GET",route="/image/:name/"';
    assert.equal(sample(text, 'imgvault_http_requests_total{method="POST",route="/image/",status_code="201"}'), 1);
    assert.equal(sample(text, `imgvault_http_requests_total{${get},status_code="200"}`), 2);
    assert.equal(sample(text, `imgvault_http_requests_total{${get},status_code="404"}`), 1);
    assert.equal(sample(text, 'imgvault_http_requests_total{method="GET",route="unmatched",status_code="404"}'), 1, "unknown URLs share one label");
    assert.equal(sample(text, `imgvault_http_request_duration_seconds_count{${get},status_code="200"}`), 2);
    assert.ok(sample(text, `imgvault_http_request_duration_seconds_sum{${get},status_code="200"}`)! > 0);
    assert.ok(sample(text, 'imgvault_http_request_bytes_total{method="POST",route="/image/"}')! > png.length, "the multipart body");
    assert.equal(sample(text, `imgvault_http_response_bytes_total{${get}}`)! >= 2 * png.length, true);

    assert.equal(sample(text, "imgvault_images_stored"), 1);
    assert.equal(sample(text, "imgvault_image_bytes_stored"), png.length);
    assert.equal(sample(text, "imgvault_hot_cache_misses_total"), 1, "the first read fills the cache");
    assert.equal(sample(text, "imgvault_hot_cache_hits_total"), 1, "the second is served from it");
    assert.equal(sample(text, "imgvault_hot_cache_bytes"), png.length);
    assert.equal(sample(text, "imgvault_work_queue_depth"), 0);
    assert.equal(sample(text, "imgvault_work_queue_active"), 0);
    assert.ok(sample(text, "imgvault_work_queue_concurrency")! >= 1);
    assert.equal(sample(text, 'imgvault_variants_total{source="computed"}'), 0);
    assert.ok(sample(text, "process_resident_memory_bytes")! > 0, "process memory (default metrics)");
    assert.ok(sample(text, "nodejs_heap_size_used_bytes")! > 0);

    // Deletes are counted like everything else.
    assert.equal((await app.inject({ method: "DELETE", url: "/image/a.png/", headers: auth(key) })).statusCode, 200);
    const again = (await app.inject({ method: "GET", url: "/metrics" })).body;
    assert.equal(sample(again, 'imgvault_http_requests_total{method="DELETE",route="/image/:name/",status_code="200"}'), 1);
  });
});
