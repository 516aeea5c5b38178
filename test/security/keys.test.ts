import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { auth, buildTestApp } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { assertError, upload } from "../helpers/http.js";

const png = fixture("valid/small.png").path;

interface KeyObject {
  id: string;
  label: string;
  prefix: string;
  scope: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  revoked_at: string | null;
}

async function createKey(app: FastifyInstance, key: string, body: Record<string, unknown>): Promise<{ token: string; key: KeyObject }> {
  const response = await app.inject({ method: "POST", url: "/api/keys/", headers: auth(key), payload: body });
  assert.equal(response.statusCode, 201, response.body);
  return response.json();
}

async function status(app: FastifyInstance, key: string): Promise<number> {
  return (await app.inject({ method: "GET", url: "/image/", headers: auth(key) })).statusCode;
}

/** A clock the test moves by hand. */
function manualClock(start = Date.parse("2030-01-01T00:00:00Z")) {
  let now = start;
  return { clock: () => new Date(now), advance: (ms: number) => (now += ms) };
}

describe("keys API", () => {
  test("POST /api/keys/ creates a key shown once, with label, scope and expiry; it works at once", async (t) => {
    const time = manualClock();
    const { app, userKey } = await buildTestApp(t, {}, { clock: time.clock });
    const owner = await userKey();
    const response = await app.inject({
      method: "POST",
      url: "/api/keys/",
      headers: auth(owner),
      payload: { label: "backup job", scope: "read", expires_in: 3600 },
    });
    assert.equal(response.statusCode, 201);
    const { token, key } = response.json<{ token: string; key: KeyObject }>();
    assert.match(token, /^ivk_[A-Za-z0-9_-]{32}$/);
    assert.equal(response.headers.location, `/api/keys/${key.id}/`);
    assert.deepEqual(
      { label: key.label, scope: key.scope, expires_at: key.expires_at, revoked_at: key.revoked_at, last_used_at: key.last_used_at },
      { label: "backup job", scope: "read", expires_at: "2030-01-01T01:00:00.000Z", revoked_at: null, last_used_at: null },
    );
    assert.ok(token.startsWith(key.prefix) && key.prefix.length < token.length);
    assert.equal(await status(app, token), 200);

    const at = await createKey(app, owner, { expires_at: "2030-06-01T00:00:00Z" });
    assert.equal(at.key.expires_at, "2030-06-01T00:00:00.000Z");
    assert.equal(at.key.scope, "read-write", "read-write is the default scope");
  });

  test("GET /api/keys/ lists the caller's keys and never a secret", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const owner = await userKey("owner");
    const created = await createKey(app, owner, { label: "one" });
    await userKey("someone-else");
    const response = await app.inject({ method: "GET", url: "/api/keys/", headers: auth(owner) });
    assert.equal(response.statusCode, 200);
    const keys = response.json<KeyObject[]>();
    assert.equal(keys.length, 2, "the user's own two keys, not the other user's");
    assert.deepEqual(Object.keys(keys[0]!).sort(), ["created_at", "expires_at", "id", "label", "last_used_at", "prefix", "revoked_at", "scope"]);
    assert.ok(keys.some((key) => key.id === created.key.id));
    assert.equal(response.body.includes(created.token), false);
    assert.equal(response.body.includes(owner), false);
    assert.equal(response.body.includes(created.token.slice(4)), false);
  });

  test("refuses malformed key requests with 400", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const owner = await userKey();
    const bad: Array<Record<string, unknown>> = [
      { scope: "admin" },
      { expires_in: 0 },
      { expires_in: -5 },
      { expires_in: "soon" },
      { expires_at: "yesterday" },
      { expires_at: "2001-01-01T00:00:00Z" },
      { expires_at: "9999-01-01T00:00:00Z" },
      { expires_in: 60, expires_at: "2099-01-01T00:00:00Z" },
      { label: "x".repeat(101) },
      { label: "bell\u0007" },
    ];
    for (const body of bad) {
      assertError(await app.inject({ method: "POST", url: "/api/keys/", headers: auth(owner), payload: body }), 400, "validation_failed");
    }
  });

  test("DELETE /api/keys/<id>/ revokes at once, even a key this node has just cached", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const owner = await userKey();
    const victim = await createKey(app, owner, { label: "leaked" });
    assert.equal(await status(app, victim.token), 200, "the key works, and its principal is now cached");
    const response = await app.inject({ method: "DELETE", url: `/api/keys/${victim.key.id}/`, headers: auth(owner) });
    assert.equal(response.statusCode, 200);
    const revoked = response.json<KeyObject>();
    assert.equal(revoked.id, victim.key.id);
    assert.ok(revoked.revoked_at !== null);
    assertError(await app.inject({ method: "GET", url: "/image/", headers: auth(victim.token) }), 401, "unauthorized");
    assertError(await app.inject({ method: "DELETE", url: `/api/keys/${victim.key.id}/`, headers: auth(owner) }), 404, "key_not_found");
    const listed = (await app.inject({ method: "GET", url: "/api/keys/", headers: auth(owner) })).json<KeyObject[]>();
    assert.ok(listed.find((key) => key.id === victim.key.id)?.revoked_at);
  });

  test("a key can revoke itself; another user's key answers 404 like one that does not exist", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const ann = await userKey("ann");
    const bob = await userKey("bob");
    const annKeys = (await app.inject({ method: "GET", url: "/api/keys/", headers: auth(ann) })).json<KeyObject[]>();
    const theirs = await app.inject({ method: "DELETE", url: `/api/keys/${annKeys[0]!.id}/`, headers: auth(bob) });
    const missing = await app.inject({ method: "DELETE", url: "/api/keys/key_doesnotexist/", headers: auth(bob) });
    assertError(theirs, 404, "key_not_found");
    assert.equal(theirs.body, missing.body);
    assert.equal(await status(app, ann), 200, "ann's key still works");

    const bobKeys = (await app.inject({ method: "GET", url: "/api/keys/", headers: auth(bob) })).json<KeyObject[]>();
    assert.equal((await app.inject({ method: "DELETE", url: `/api/keys/${bobKeys[0]!.id}/`, headers: auth(bob) })).statusCode, 200);
    assertError(await app.inject({ method: "GET", url: "/api/keys/", headers: auth(bob) }), 401, "unauthorized");
  });

  test("POST /api/token/rotate revokes the calling key and returns one with the same label, scope and expiry", async (t) => {
    const time = manualClock();
    const { app, userKey } = await buildTestApp(t, {}, { clock: time.clock });
    const owner = await userKey();
    const old = await createKey(app, owner, { label: "deploy", expires_in: 7200 });
    assert.equal(await status(app, old.token), 200);
    time.advance(1000);
    const response = await app.inject({ method: "POST", url: "/api/token/rotate", headers: auth(old.token) });
    assert.equal(response.statusCode, 200, response.body);
    const rotated = response.json<{ token: string; key: KeyObject }>();
    assert.notEqual(rotated.token, old.token);
    assert.deepEqual(
      [rotated.key.label, rotated.key.scope, rotated.key.expires_at],
      [old.key.label, old.key.scope, old.key.expires_at],
    );
    assertError(await app.inject({ method: "GET", url: "/image/", headers: auth(old.token) }), 401, "unauthorized");
    assertError(await app.inject({ method: "POST", url: "/api/token/rotate", headers: auth(old.token) }), 401, "unauthorized");
    assert.equal(await status(app, rotated.token), 200);
    assertError(await app.inject({ method: "POST", url: "/api/token/rotate" }), 401, "unauthorized");
  });

  test("an expired key answers 401 from the moment it expires", async (t) => {
    const time = manualClock();
    const { app, userKey } = await buildTestApp(t, {}, { clock: time.clock });
    const owner = await userKey();
    const shortLived = await createKey(app, owner, { expires_in: 60 });
    assert.equal(await status(app, shortLived.token), 200);
    time.advance(59_000);
    assert.equal(await status(app, shortLived.token), 200);
    time.advance(1_000);
    assertError(await app.inject({ method: "GET", url: "/image/", headers: auth(shortLived.token) }), 401, "unauthorized");
    assertError(await app.inject({ method: "POST", url: "/api/token/rotate", headers: auth(shortLived.token) }), 401, "unauthorized");
    assert.equal(await status(app, owner), 200, "keys without expiry are unaffected");
  });

  test("a read key may read but gets 403 on every write route, the keys API included", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const owner = await userKey();
    assert.equal((await upload(app, owner, png, "mine.png")).statusCode, 201);
    const reader = await createKey(app, owner, { scope: "read", label: "viewer" });
    const ownerKeyId = (await app.inject({ method: "GET", url: "/api/keys/", headers: auth(owner) })).json<KeyObject[]>().at(-1)!.id;

    assert.equal((await app.inject({ method: "GET", url: "/image/", headers: auth(reader.token) })).statusCode, 200);
    assert.equal((await app.inject({ method: "GET", url: "/image/mine.png/", headers: auth(reader.token) })).statusCode, 200);
    assert.equal((await app.inject({ method: "GET", url: "/api/keys/", headers: auth(reader.token) })).statusCode, 200);

    const writes: Array<() => Promise<LightMyRequestResponse>> = [
      () => upload(app, reader.token, png, "new.png"),
      () => upload(app, reader.token, png, "new.png", { method: "PATCH", url: "/image/mine.png/" }),
      () => upload(app, reader.token, png, "x.png", { method: "PATCH", url: "/image/mine.png/", fields: { name: "renamed.png" } }),
      () => app.inject({ method: "DELETE", url: "/image/mine.png/", headers: auth(reader.token) }),
      () => app.inject({ method: "POST", url: "/api/keys/", headers: auth(reader.token), payload: { scope: "read-write" } }),
      () => app.inject({ method: "DELETE", url: `/api/keys/${ownerKeyId}/`, headers: auth(reader.token) }),
      () => app.inject({ method: "POST", url: "/api/token/rotate", headers: auth(reader.token) }),
    ];
    for (const write of writes) assertError(await write(), 403, "forbidden");

    const list = (await app.inject({ method: "GET", url: "/image/", headers: auth(owner) })).json<Array<{ name: string }>>();
    assert.deepEqual(list.map((image) => image.name), ["mine.png"]);
    assert.equal(await status(app, owner), 200, "the owner's key was not revoked");
    assert.equal((await app.inject({ method: "GET", url: "/api/keys/", headers: auth(owner) })).json<KeyObject[]>().length, 2);
  });

  test("the keys API answers 405 to other methods and 401 without a key", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const owner = await userKey();
    assertError(await app.inject({ method: "PUT", url: "/api/keys/", headers: auth(owner) }), 405, "method_not_allowed");
    assertError(await app.inject({ method: "GET", url: "/api/token/rotate", headers: auth(owner) }), 405, "method_not_allowed");
    for (const call of [
      { method: "GET", url: "/api/keys/" },
      { method: "POST", url: "/api/keys/" },
      { method: "DELETE", url: "/api/keys/key_x/" },
    ] as const) {
      assertError(await app.inject(call), 401, "unauthorized");
    }
  });
});
