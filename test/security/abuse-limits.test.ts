import assert from "node:assert/strict";
import crypto from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { syncBuiltinESMExports } from "node:module";
import { connect, type Socket } from "node:net";
import { PassThrough } from "node:stream";
import { describe, mock, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { auth, buildTestApp, multipart } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { assertError, filesUnder, upload } from "../helpers/http.js";

function login(app: FastifyInstance, username: string, password: string, remoteAddress = "203.0.113.7") {
  return app.inject({ method: "POST", url: "/api/token/", payload: { username, password }, remoteAddress });
}

function assertTooMany(response: Awaited<ReturnType<typeof login>>): void {
  assertError(response, 429, "too_many_requests");
  const retryAfter = Number(response.headers["retry-after"]);
  assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1, `Retry-After is whole seconds, got ${String(response.headers["retry-after"])}`);
  assert.equal("token" in response.json(), false);
}

describe("POST /api/token/ rate limits", () => {
  test("by default, 10 attempts a minute from one address; the 11th is 429 with Retry-After, right password or not", async (t) => {
    const { app } = await buildTestApp(t);
    await app.services.accounts.ensureUser("alice", "wonderland");
    for (let attempt = 1; attempt <= 10; attempt += 1) {
      assertError(await login(app, attempt % 2 ? "alice" : `guess${attempt}`, "wrong"), 400, "invalid_credentials");
    }
    assertTooMany(await login(app, "alice", "wonderland"));
    assertTooMany(await login(app, "someone-new", "whatever"));
    assert.equal((await login(app, "alice", "wonderland", "198.51.100.1")).statusCode, 200, "another address is not affected");
  });

  test("per username, whichever addresses the guesses come from", async (t) => {
    const { app } = await buildTestApp(t, { IMGVAULT_LOGIN_ATTEMPTS_PER_USERNAME: "3", IMGVAULT_LOGIN_ATTEMPTS_PER_ADDRESS: "1000" });
    await app.services.accounts.ensureUser("alice", "wonderland");
    await app.services.accounts.ensureUser("bob", "builder");
    for (let attempt = 1; attempt <= 3; attempt += 1) {
      assertError(await login(app, "alice", "wrong", `192.0.2.${attempt}`), 400, "invalid_credentials");
    }
    assertTooMany(await login(app, "alice", "wonderland", "192.0.2.99"));
    assertTooMany(await login(app, "ALICE", "wonderland", "192.0.2.98"));
    assert.equal((await login(app, "bob", "builder", "192.0.2.1")).statusCode, 200, "other usernames are not affected");
  });

  test("the limits are configuration, and 0 turns them off", async (t) => {
    const strict = await buildTestApp(t, { IMGVAULT_LOGIN_ATTEMPTS_PER_ADDRESS: "2" });
    await login(strict.app, "a", "b");
    await login(strict.app, "c", "d");
    assertTooMany(await login(strict.app, "e", "f"));

    const off = await buildTestApp(t, { IMGVAULT_LOGIN_ATTEMPTS_PER_ADDRESS: "0", IMGVAULT_LOGIN_ATTEMPTS_PER_USERNAME: "0" });
    for (let attempt = 0; attempt < 15; attempt += 1) assertError(await login(off.app, "nobody", "x"), 400, "invalid_credentials");
  });

  test("an unknown username costs the same password hash as a wrong password", async (t) => {
    const { app } = await buildTestApp(t);
    await app.services.accounts.ensureUser("alice", "wonderland");
    // Count real scrypt calls (the hash still runs); the decoy hash is made once, before counting.
    await login(app, "warm-up", "x");
    const scrypt = mock.method(crypto, "scrypt");
    syncBuiltinESMExports();
    t.after(() => {
      scrypt.mock.restore();
      syncBuiltinESMExports();
    });
    assertError(await login(app, "nobody-by-this-name", "x"), 400, "invalid_credentials");
    const unknownUser = scrypt.mock.calls.map((call) => call.arguments[3]);
    scrypt.mock.resetCalls();
    assertError(await login(app, "alice", "wrong"), 400, "invalid_credentials");
    const wrongPassword = scrypt.mock.calls.map((call) => call.arguments[3]);
    assert.equal(unknownUser.length, 1, "the unknown user's attempt ran one password hash");
    assert.deepEqual(unknownUser, wrongPassword, "with the same cost parameters");
  });
});

describe("concurrent uploads per key", () => {
  test("beyond the cap an upload is 429 with Retry-After; other keys go on; the slot frees when the upload ends", async (t) => {
    const { app, userKey, dataDir } = await buildTestApp(t, { IMGVAULT_MAX_CONCURRENT_UPLOADS_PER_KEY: "1" });
    const key = await userKey("uploader");
    const png = await readFile(fixture("valid/small.png").path);
    const body = await multipart([{ bytes: png, filename: "slow.png" }]);

    // An upload whose body has not finished arriving holds the key's only slot.
    const slowBody = new PassThrough();
    const slow = app.inject({ method: "POST", url: "/image/", headers: { ...auth(key), ...body.headers }, payload: slowBody });
    slowBody.write(body.payload.subarray(0, 400));
    // Its file being staged shows it passed the cap and holds the slot.
    while ((await filesUnder(join(dataDir, "tmp"))).length === 0) await new Promise((resolve) => setImmediate(resolve));

    const refused = await upload(app, key, fixture("valid/small.png").path, "second.png");
    assertError(refused, 429, "too_many_requests");
    assert.equal(refused.headers["retry-after"], "1");
    const patch = await upload(app, key, fixture("valid/small.png").path, "x.png", { method: "PATCH", url: "/image/slow.png/" });
    assertError(patch, 429, "too_many_requests");
    assert.equal((await app.inject({ method: "GET", url: "/image/", headers: auth(key) })).statusCode, 200, "reads are not capped");

    const { user } = await app.services.accounts.ensureUser("uploader", "correct horse battery staple");
    const otherKey = (await app.services.accounts.issueKey(user.id)).key;
    assert.equal((await upload(app, otherKey, fixture("valid/small.png").path, "other.png")).statusCode, 201);

    slowBody.end(body.payload.subarray(400));
    assert.equal((await slow).statusCode, 201);
    assert.equal((await upload(app, key, fixture("valid/small.png").path, "third.png")).statusCode, 201);
    // Refused uploads give their slot back too.
    for (let attempt = 0; attempt < 3; attempt += 1) {
      assertError(await upload(app, key, fixture("hostile/text.png").path, "bad.png"), 415, "unsupported_media_type");
    }
    assert.equal((await upload(app, key, fixture("valid/small.png").path, "fourth.png")).statusCode, 201);
  });
});

/** Opens a raw TCP connection to the app, so a test can be as slow a client as it likes. */
async function rawClient(url: string): Promise<{ socket: Socket; received: () => string; closed: Promise<void> }> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  await new Promise<void>((resolve, reject) => socket.once("connect", resolve).once("error", reject));
  let data = "";
  socket.on("data", (chunk: Buffer) => (data += chunk.toString("latin1")));
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  return { socket, received: () => data, closed };
}

/** Sends `text` one byte a second until the server closes the connection (or the text runs out). */
async function trickle(socket: Socket, text: string, closed: Promise<void>): Promise<{ cutOff: boolean }> {
  let isClosed = false;
  void closed.then(() => (isClosed = true));
  for (const byte of text) {
    if (isClosed || socket.destroyed) return { cutOff: true };
    socket.write(byte);
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  return { cutOff: isClosed };
}

describe("slow clients", { timeout: 60_000 }, () => {
  const env = { IMGVAULT_HEADERS_TIMEOUT_MS: "1500", IMGVAULT_REQUEST_TIMEOUT_MS: "3000" };

  test("a client sending its headers a byte a second is answered 408 and cut off", async (t) => {
    const { app } = await buildTestApp(t, env);
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    const client = await rawClient(url);
    const { cutOff } = await trickle(client.socket, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: ${"a".repeat(40)}\r\n\r\n`, client.closed);
    assert.ok(cutOff, "the server closed the connection before the headers were complete");
    await client.closed;
    assert.ok(client.received() === "" || client.received().startsWith("HTTP/1.1 408"), client.received());
    assert.equal((await fetch(`${url}/healthz`)).status, 200, "the server still answers others");
  });

  test("a client sending its upload body a byte a second is cut off", async (t) => {
    const { app, userKey } = await buildTestApp(t, env);
    const key = await userKey();
    const url = await app.listen({ host: "127.0.0.1", port: 0 });
    const client = await rawClient(url);
    const boundary = "slowboundary";
    const head =
      `POST /image/ HTTP/1.1\r\nHost: x\r\nAuthorization: Token ${key}\r\n` +
      `Content-Type: multipart/form-data; boundary=${boundary}\r\nContent-Length: 100000\r\n\r\n` +
      `--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="slow.png"\r\n\r\n`;
    client.socket.write(head);
    const { cutOff } = await trickle(client.socket, "x".repeat(40), client.closed);
    assert.ok(cutOff, "the server closed the connection before the body was complete");
    await client.closed;
    assert.ok(client.received() === "" || /^HTTP\/1\.1 (408|400)/.test(client.received()), client.received());
    const list = await fetch(`${url}/image/`, { headers: auth(key) });
    assert.deepEqual(await list.json(), [], "nothing was stored");
  });
});
