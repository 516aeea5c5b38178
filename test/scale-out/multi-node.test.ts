/**
 * Three real `imgvault serve` processes on their own ports and data directories, sharing one
 * fresh PostgreSQL database, one S3 prefix (the S3 engine of scripts/ci-services.sh) and one Redis
 * key prefix: what one node writes, the others list, render, replace and delete; concurrent
 * creates of one name across nodes all survive under distinct names; a login limit of N holds for
 * all nodes together; a URL signed on one node works on the others.
 *
 * Skipped, saying so, when S3_ENDPOINT is unset.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { runCli, startServer, type ServerProcess } from "../helpers/cli.js";
import { fixture } from "../helpers/fixtures.js";
import { closeRedis, connectRedis } from "../../src/services/redis.js";
import { createScaleOutBackend, scaleOutSkipReason, type ScaleOutBackend } from "../helpers/scale-out.js";

const redisUrl = process.env.TEST_REDIS_URL ?? "redis://127.0.0.1:6379";
const loginLimit = 4;
const png = fixture("valid/small.png").path;
const jpeg = fixture("valid/small.jpg").path;

interface ImageObject {
  name: string;
  sha256: string;
  bytes: number;
  format: string;
}

describe("three server processes sharing PostgreSQL, S3 and Redis", { skip: scaleOutSkipReason }, () => {
  let backend: ScaleOutBackend;
  const redisPrefix = `imgvault-multinode-${process.pid}-${randomBytes(4).toString("hex")}:`;
  const dataDirs: string[] = [];
  const nodes: ServerProcess[] = [];
  let env: Record<string, string>;
  let key = "";

  before(async () => {
    backend = await createScaleOutBackend("multi-node");
    env = {
      ...backend.env,
      REDIS_URL: redisUrl,
      REDIS_KEY_PREFIX: redisPrefix,
      IMGVAULT_LOGIN_ATTEMPTS_PER_USERNAME: String(loginLimit),
      IMGVAULT_LOGIN_ATTEMPTS_PER_ADDRESS: "0",
    };
    for (let i = 0; i < 3; i += 1) dataDirs.push(await mkdtemp(join(tmpdir(), `imgvault-node${i}-`)));
    // All at once on an empty database and Redis prefix: migrations, the bucket and the signing key
    // ring are each set up once, whoever comes first.
    const started = await Promise.allSettled(dataDirs.map((dataDir) => startServer(["--data-dir", dataDir], env)));
    for (const outcome of started) if (outcome.status === "fulfilled") nodes.push(outcome.value);
    const failed = started.find((outcome) => outcome.status === "rejected");
    if (failed) throw failed.reason;
    // The CLI writes the user and key into the shared database, like any node.
    const result = await runCli(["get-access-key", "--username", "shared-user", "--password-stdin", "--data-dir", dataDirs[0]!], {
      stdin: "correct horse battery staple\n",
      env,
    });
    assert.equal(result.code, 0, result.stderr);
    key = result.stdout.trim().split("\n").at(-1)!;
  });

  after(async () => {
    await Promise.all(nodes.map((node) => node.stop()));
    await Promise.all(dataDirs.map((dir) => rm(dir, { recursive: true, force: true })));
    const redis = await connectRedis({ url: redisUrl, keyPrefix: "" });
    const keys = await redis.keys(`${redisPrefix}*`);
    if (keys.length > 0) await redis.del(...keys);
    await closeRedis(redis);
    await backend?.dispose();
  });

  const node = (index: number) => nodes[index % nodes.length]!;
  const headers = () => ({ Authorization: `Token ${key}` });

  async function send(index: number, method: "POST" | "PATCH", path: string, file: string, filename: string, fields: Record<string, string> = {}) {
    const form = new FormData();
    for (const [name, value] of Object.entries(fields)) form.append(name, value);
    form.append("image", new Blob([new Uint8Array(await readFile(file))]), filename);
    return fetch(`${node(index).url}${path}`, { method, headers: headers(), body: form });
  }

  async function list(index: number): Promise<ImageObject[]> {
    const response = await fetch(`${node(index).url}/image/?limit=1000`, { headers: headers() });
    assert.equal(response.status, 200);
    return (await response.json()) as ImageObject[];
  }

  async function bytesOf(index: number, name: string): Promise<{ status: number; body: Buffer }> {
    const response = await fetch(`${node(index).url}/image/${encodeURIComponent(name)}/`, { headers: headers() });
    return { status: response.status, body: Buffer.from(await response.arrayBuffer()) };
  }

  test("an image uploaded through one node is listed, rendered, replaced and deleted through the others", async () => {
    const created = await send(0, "POST", "/image/", png, "shared.png");
    assert.equal(created.status, 201);

    assert.ok((await list(1)).some((image) => image.name === "shared.png"), "listed on node 1");
    const rendered = await bytesOf(2, "shared.png");
    assert.equal(rendered.status, 200);
    assert.ok(rendered.body.equals(await readFile(png)), "node 2 serves the bytes node 0 stored");
    // Warm node 0's in-memory cache with the old bytes before another node replaces them.
    assert.ok((await bytesOf(0, "shared.png")).body.equals(await readFile(png)));

    const replaced = await send(1, "PATCH", "/image/shared.png/", jpeg, "x.jpg");
    assert.equal(replaced.status, 200);
    assert.equal(((await replaced.json()) as ImageObject).format, "jpeg");
    for (const index of [0, 2]) {
      const after = await bytesOf(index, "shared.png");
      assert.equal(after.status, 200);
      assert.ok(after.body.equals(await readFile(jpeg)), `node ${index} serves the replacement`);
    }
    const variant = await fetch(`${node(2).url}/image/shared.png/?w=40`, { headers: headers() });
    assert.equal(variant.status, 200, "a transform of the replacement on a third node");

    const deleted = await fetch(`${node(2).url}/image/shared.png/`, { method: "DELETE", headers: headers() });
    assert.equal(deleted.status, 200);
    for (const index of [0, 1]) {
      assert.equal((await bytesOf(index, "shared.png")).status, 404, `gone on node ${index}`);
      assert.ok(!(await list(index)).some((image) => image.name === "shared.png"));
    }
  });

  test("concurrent creates of one name across the nodes lose nothing: distinct names, all present", async () => {
    const uploads = Array.from({ length: 12 }, (_, i) => send(i, "POST", "/image/", i % 2 === 0 ? png : jpeg, "race.png"));
    const responses = await Promise.all(uploads);
    const names: string[] = [];
    for (const response of responses) {
      assert.equal(response.status, 201);
      names.push(((await response.json()) as ImageObject).name);
    }
    assert.equal(new Set(names).size, 12, `distinct: ${names.join(", ")}`);
    assert.ok(names.includes("race.png"));
    for (let index = 0; index < 3; index += 1) {
      const listed = (await list(index)).map((image) => image.name).filter((name) => name.startsWith("race"));
      assert.deepEqual(listed.sort(), [...names].sort(), `node ${index} lists every one`);
    }
    for (const name of names) assert.equal((await bytesOf(names.indexOf(name) + 1, name)).status, 200);
  });

  test(`a login limit of ${loginLimit} per username holds for all nodes together (shared Redis counters)`, async () => {
    const statuses: number[] = [];
    for (let attempt = 0; attempt < loginLimit + 2; attempt += 1) {
      const response = await fetch(`${node(attempt).url}/api/token/`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ username: "shared-user", password: "wrong guess" }),
      });
      statuses.push(response.status);
      if (response.status === 429) assert.match(response.headers.get("retry-after") ?? "", /^\d+$/);
    }
    assert.deepEqual(statuses, [...Array<number>(loginLimit).fill(400), 429, 429]);
  });

  test("a URL signed on one node renders on the others (one key ring, shared through Redis)", async () => {
    assert.equal((await send(0, "POST", "/image/", png, "signed.png")).status, 201);
    const signing = await fetch(`${node(0).url}/image/signed.png/signed-url`, {
      method: "POST",
      headers: { ...headers(), "content-type": "application/json" },
      body: JSON.stringify({ expires_in: 600 }),
    });
    assert.equal(signing.status, 200);
    const { url } = (await signing.json()) as { url: string };
    const path = new URL(url).pathname + new URL(url).search;
    for (const index of [1, 2]) {
      const response = await fetch(`${node(index).url}${path}`);
      assert.equal(response.status, 200, `node ${index}`);
      assert.ok(Buffer.from(await response.arrayBuffer()).equals(await readFile(png)));
    }
  });
});
