/**
 * What nodes share through Redis (REDIS_URL), on the real Redis of this machine (TEST_REDIS_URL,
 * default redis://127.0.0.1:6379): the signing key ring, created once however many nodes start at
 * once, rotated without losing old keys; login attempts counted once for all nodes; a Redis that
 * does not answer stops a node from starting with state of its own, and a running node refuses
 * logins it cannot count. Each test works under its own key prefix and removes it afterwards.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { describe, test, type TestContext } from "node:test";
import { loadConfig } from "../../src/config.js";
import { isAppError } from "../../src/errors.js";
import { closeRedis, connectRedis, type RedisClient } from "../../src/services/redis.js";
import { loadKeyRingFor, loadSharedKeyRing, rotateSharedKeyRing, UrlSigner } from "../../src/services/signing.js";
import { buildTestApp, type TestApp } from "../helpers/app.js";
import { Relay } from "../helpers/tcp-relay.js";

export const testRedisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";

async function redisUnderFreshPrefix(t: TestContext): Promise<{ client: RedisClient; keyPrefix: string; connectAnother(): Promise<RedisClient> }> {
  const keyPrefix = `imgvault-test-${process.pid}-${randomBytes(4).toString("hex")}:`;
  const clients: RedisClient[] = [];
  const connectAnother = async () => {
    const client = await connectRedis({ url: testRedisUrl, keyPrefix });
    clients.push(client);
    return client;
  };
  const client = await connectAnother();
  t.after(async () => {
    // KEYS is fine on a test Redis; the prefix is ours alone. The client's own prefix is not
    // applied to KEYS patterns' results, so delete through a client without one.
    const keys = await client.keys(`${keyPrefix}*`);
    const bare = await connectRedis({ url: testRedisUrl, keyPrefix: "" });
    if (keys.length > 0) await bare.del(...keys);
    await closeRedis(bare);
    await Promise.all(clients.map((each) => closeRedis(each)));
  });
  return { client, keyPrefix, connectAnother };
}

describe("state shared through Redis", () => {
  test("REDIS_URL and REDIS_KEY_PREFIX are read into the configuration, and a bad URL is refused", () => {
    assert.equal(loadConfig({}).redis, undefined);
    assert.deepEqual(loadConfig({ REDIS_URL: "redis://cache:6379/2" }).redis, { url: "redis://cache:6379/2", keyPrefix: "imgvault:" });
    assert.deepEqual(loadConfig({ REDIS_URL: "rediss://cache", REDIS_KEY_PREFIX: "blue:" }).redis, { url: "rediss://cache", keyPrefix: "blue:" });
    assert.throws(() => loadConfig({ REDIS_URL: "http://cache" }), /REDIS_URL must start with redis:\/\//);
  });

  test("nodes starting at once agree on one generated signing key", async (t) => {
    const { connectAnother } = await redisUnderFreshPrefix(t);
    const nodes = await Promise.all(Array.from({ length: 6 }, () => connectAnother()));
    const rings = await Promise.all(nodes.map((node) => loadSharedKeyRing(node)));
    const ids = new Set(rings.map((ring) => ring.current.id));
    assert.equal(ids.size, 1, "one key for all");
    assert.ok(rings.every((ring) => ring.current.secret.equals(rings[0]!.current.secret)));
    assert.ok(rings[0]!.current.secret.length >= 32);
    // A URL signed on one node verifies on another.
    const signed = new UrlSigner(rings[0]!).sign({ resource: "/s/ann/cat.png", params: "", expiresInSeconds: 60 });
    const verified = new UrlSigner(rings[5]!).verify({ resource: "/s/ann/cat.png", params: "", query: { ...signed.params } });
    assert.equal(verified.keyId, rings[0]!.current.id);
  });

  test("rotation makes a new key current and keeps the old one verifying, for every node", async (t) => {
    const { client, connectAnother } = await redisUnderFreshPrefix(t);
    const before = await loadSharedKeyRing(client);
    const oldUrl = new UrlSigner(before).sign({ resource: "/s/ann/a.png", params: "w=10", expiresInSeconds: 600 });
    const [first, second] = await Promise.all([rotateSharedKeyRing(client), rotateSharedKeyRing(await connectAnother())]);
    assert.notEqual(first.current.id, second.current.id, "two rotations at once both happen");
    const after = await loadSharedKeyRing(await connectAnother());
    assert.equal(after.previous.length, 2);
    assert.ok([first.current.id, second.current.id].includes(after.current.id));
    assert.ok(after.previous.some((key) => key.id === before.current.id));
    assert.equal(new UrlSigner(after).verify({ resource: "/s/ann/a.png", params: "w=10", query: { ...oldUrl.params } }).keyId, before.current.id);
  });

  test("configured keys win over Redis, and Redis over the data directory", async (t) => {
    const { client } = await redisUnderFreshPrefix(t);
    const configured = [{ id: "main", secret: "x".repeat(40) }];
    const fromConfig = await loadKeyRingFor({ signingKeys: configured, dataDir: "/nonexistent" }, client);
    assert.equal(fromConfig.current.id, "main");
    const shared = await loadKeyRingFor({ signingKeys: undefined, dataDir: "/nonexistent" }, client);
    assert.equal(shared.current.id, (await loadSharedKeyRing(client)).current.id);
    assert.equal(await client.exists("signing-keys"), 1, "stored under the client's prefix");
  });

  test("different key prefixes keep deployments apart", async (t) => {
    const blue = await redisUnderFreshPrefix(t);
    const green = await redisUnderFreshPrefix(t);
    const blueRing = await loadSharedKeyRing(blue.client);
    const greenRing = await loadSharedKeyRing(green.client);
    assert.notEqual(blueRing.current.id, greenRing.current.id);
  });

  test("a Redis that does not answer is service_unavailable at start, naming where without the password", async () => {
    await assert.rejects(connectRedis({ url: "redis://:hunter2@127.0.0.1:1", keyPrefix: "x:" }), (error: unknown) => {
      assert.ok(isAppError(error) && error.code === "service_unavailable", String(error));
      assert.match(error.message, /127\.0\.0\.1:1/);
      assert.doesNotMatch(error.message, /hunter2/);
      return true;
    });
  });
});

async function loginAttempt(node: TestApp, username: string): Promise<number> {
  const response = await node.app.inject({ method: "POST", url: "/api/token/", payload: { username, password: "not the password" } });
  if (response.statusCode === 429) assert.match(String(response.headers["retry-after"]), /^\d+$/);
  return response.statusCode;
}

describe("login rate limits across nodes", () => {
  const limits = { IMGVAULT_LOGIN_ATTEMPTS_PER_USERNAME: "3", IMGVAULT_LOGIN_ATTEMPTS_PER_ADDRESS: "0" };

  test("with REDIS_URL a limit of 3 attempts holds for all nodes together", async (t) => {
    const { keyPrefix } = await redisUnderFreshPrefix(t);
    const env = { ...limits, REDIS_URL: testRedisUrl, REDIS_KEY_PREFIX: keyPrefix };
    const nodes = [await buildTestApp(t, env), await buildTestApp(t, env)];
    const statuses = [];
    for (let attempt = 0; attempt < 5; attempt += 1) statuses.push(await loginAttempt(nodes[attempt % 2]!, "mallory-target"));
    assert.deepEqual(statuses, [400, 400, 400, 429, 429]);
    // Another username has its own budget.
    assert.equal(await loginAttempt(nodes[1]!, "someone-else"), 400);
  });

  test("without REDIS_URL each node counts alone (the documented single-node behaviour)", async (t) => {
    const nodes = [await buildTestApp(t, limits), await buildTestApp(t, limits)];
    const statuses = [];
    for (let attempt = 0; attempt < 8; attempt += 1) statuses.push(await loginAttempt(nodes[attempt % 2]!, "mallory-target"));
    assert.deepEqual(statuses, [400, 400, 400, 400, 400, 400, 429, 429]);
  });

  test("a node whose Redis goes away refuses logins with 503 (never uncounted, never 500) and counts again when it returns", async (t) => {
    const { keyPrefix } = await redisUnderFreshPrefix(t);
    const target = new URL(testRedisUrl);
    const relay = new Relay(target.hostname, Number(target.port || 6379));
    await relay.start();
    t.after(() => relay.cut());
    const url = new URL(testRedisUrl);
    url.hostname = "127.0.0.1";
    url.port = String(relay.port);
    const node = await buildTestApp(t, { ...limits, REDIS_URL: url.toString(), REDIS_KEY_PREFIX: keyPrefix });
    assert.equal(await loginAttempt(node, "victim"), 400);

    await relay.cut();
    const refused = await node.app.inject({ method: "POST", url: "/api/token/", payload: { username: "victim", password: "guess" } });
    assert.equal(refused.statusCode, 503, refused.body);
    assert.equal(refused.json<{ error: { code: string } }>().error.code, "service_unavailable");
    assert.match(String(refused.headers["retry-after"]), /^\d+$/);

    await relay.start();
    // ioredis reconnects in the background; the first attempts after the return may still fail with 503.
    const statuses: number[] = [];
    for (let attempt = 0; attempt < 40 && statuses.filter((status) => status !== 503).length < 3; attempt += 1) {
      const status = await loginAttempt(node, "victim");
      statuses.push(status);
      if (status === 503) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    assert.deepEqual(statuses.filter((status) => status !== 503), [400, 400, 429], "the count before the outage was kept");
  });
});
