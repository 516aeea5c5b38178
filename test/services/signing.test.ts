import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, test } from "node:test";
import { ConfigError, loadConfig } from "../../src/config.js";
import { isAppError, type ErrorCode } from "../../src/errors.js";
import { canonicalTransformParams, parseTransformParams } from "../../src/processing/transform-params.js";
import {
  loadKeyRing,
  maxSignedUrlLifetimeSeconds,
  rotateKeyFile,
  signingKeysFileName,
  UrlSigner,
  type KeyRing,
  type SigningKey,
} from "../../src/services/signing.js";

/** A clock the test moves by hand. */
function manualClock(start = Date.parse("2030-01-01T00:00:00Z")) {
  let now = start;
  return {
    clock: () => new Date(now),
    advance(seconds: number) {
      now += seconds * 1000;
    },
  };
}

function key(id: string): SigningKey {
  return { id, secret: randomBytes(32) };
}

function refusedWith(code: ErrorCode) {
  return (error: unknown) => {
    assert.ok(isAppError(error), `expected an AppError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.status, 403);
    return true;
  };
}

const resource = "/s/alice/cat.png";
const params = canonicalTransformParams(parseTransformParams({ w: "300", format: "webp" }));

/** What a GET of the signed URL presents: its query, parsed as Fastify does. */
function queryOf(signedQuery: string, extra: Record<string, string> = {}): Record<string, unknown> {
  return { ...Object.fromEntries(new URLSearchParams(params)), ...Object.fromEntries(new URLSearchParams(signedQuery)), ...extra };
}

void describe("UrlSigner", () => {
  const ring: KeyRing = { current: key("k1"), previous: [] };

  void test("a URL it signed verifies, with the time left and the key it used", () => {
    const time = manualClock();
    const signer = new UrlSigner(ring, time.clock);
    const signed = signer.sign({ resource, params, expiresInSeconds: 3600 });
    assert.equal(signed.expiresAt.toISOString(), "2030-01-01T01:00:00.000Z");
    assert.match(signed.query, /^exp=\d+&kid=k1&sig=[A-Za-z0-9_-]{43}$/);
    time.advance(600);
    const verified = signer.verify({ resource, params, query: queryOf(signed.query) });
    assert.equal(verified.keyId, "k1");
    assert.equal(verified.secondsLeft, 3000);
    assert.equal(verified.expiresAt.getTime(), signed.expiresAt.getTime());
    assert.equal(verified.contentVersion, undefined);
  });

  void test("the same transform written differently still verifies (signatures cover canonical parameters)", () => {
    const signer = new UrlSigner(ring, manualClock().clock);
    const signed = signer.sign({ resource, params, expiresInSeconds: 60 });
    const reordered = canonicalTransformParams(parseTransformParams({ format: "webp", fit: "inside", w: "300" }));
    assert.doesNotThrow(() => signer.verify({ resource, params: reordered, query: queryOf(signed.query) }));
  });

  void test("any tampering is signature_invalid", () => {
    const signer = new UrlSigner(ring, manualClock().clock);
    const signed = signer.sign({ resource, params, expiresInSeconds: 3600 });
    const query = queryOf(signed.query);
    const sig = String(query.sig);
    const flipped = (sig[0] === "A" ? "B" : "A") + sig.slice(1);
    const attempts: Array<[string, () => unknown]> = [
      ["another image", () => signer.verify({ resource: "/s/alice/dog.png", params, query })],
      ["another owner", () => signer.verify({ resource: "/s/bob/cat.png", params, query })],
      ["another width", () => signer.verify({ resource, params: "w=3000&format=webp", query })],
      ["no transform", () => signer.verify({ resource, params: "", query })],
      ["a later expiry", () => signer.verify({ resource, params, query: { ...query, exp: String(Number(query.exp) + 86400) } })],
      ["a changed signature", () => signer.verify({ resource, params, query: { ...query, sig: flipped } })],
      ["a truncated signature", () => signer.verify({ resource, params, query: { ...query, sig: sig.slice(0, 42) } })],
      ["a padded signature", () => signer.verify({ resource, params, query: { ...query, sig: `${sig}=` } })],
      ["an unknown key id", () => signer.verify({ resource, params, query: { ...query, kid: "k2" } })],
      ["an added content version", () => signer.verify({ resource, params, query: { ...query, v: "0123abcd" } })],
      ["no signature", () => signer.verify({ resource, params, query: { ...query, sig: undefined } })],
      ["no expiry", () => signer.verify({ resource, params, query: { ...query, exp: undefined } })],
      ["no key id", () => signer.verify({ resource, params, query: { ...query, kid: undefined } })],
      ["a repeated signature", () => signer.verify({ resource, params, query: { ...query, sig: [sig, sig] } })],
      ["a non-numeric expiry", () => signer.verify({ resource, params, query: { ...query, exp: "soon" } })],
    ];
    for (const [what, attempt] of attempts) assert.throws(attempt, refusedWith("signature_invalid"), what);
  });

  void test("a signature from another secret with the same key id is refused", () => {
    const time = manualClock();
    const signed = new UrlSigner({ current: key("k1"), previous: [] }, time.clock).sign({ resource, params, expiresInSeconds: 60 });
    const other = new UrlSigner({ current: key("k1"), previous: [] }, time.clock);
    assert.throws(() => other.verify({ resource, params, query: queryOf(signed.query) }), refusedWith("signature_invalid"));
  });

  void test("expires: valid one second before, signature_expired at and after the expiry", () => {
    const time = manualClock();
    const signer = new UrlSigner(ring, time.clock);
    const signed = signer.sign({ resource, params, expiresInSeconds: 120 });
    time.advance(119);
    assert.equal(signer.verify({ resource, params, query: queryOf(signed.query) }).secondsLeft, 1);
    time.advance(1);
    assert.throws(() => signer.verify({ resource, params, query: queryOf(signed.query) }), refusedWith("signature_expired"));
    time.advance(86400);
    assert.throws(() => signer.verify({ resource, params, query: queryOf(signed.query) }), refusedWith("signature_expired"));
  });

  void test("a tampered expired URL is invalid, not expired: only genuine URLs are told they expired", () => {
    const time = manualClock();
    const signer = new UrlSigner(ring, time.clock);
    const signed = signer.sign({ resource, params, expiresInSeconds: 60 });
    time.advance(3600);
    assert.throws(() => signer.verify({ resource: "/s/alice/dog.png", params, query: queryOf(signed.query) }), refusedWith("signature_invalid"));
  });

  void test("lifetime is 1 second to 7 days", () => {
    const signer = new UrlSigner(ring, manualClock().clock);
    for (const expiresInSeconds of [0, -1, 1.5, maxSignedUrlLifetimeSeconds + 1, Number.NaN]) {
      assert.throws(
        () => signer.sign({ resource, params, expiresInSeconds }),
        (error: unknown) => isAppError(error) && error.code === "invalid_parameter" && /expires_in/.test(error.message),
        String(expiresInSeconds),
      );
    }
    assert.doesNotThrow(() => signer.sign({ resource, params, expiresInSeconds: maxSignedUrlLifetimeSeconds }));
  });

  void test("rotation: URLs signed with the previous key still verify, new URLs use the new key", () => {
    const time = manualClock();
    const oldKey = key("k1");
    const newKey = key("k2");
    const before = new UrlSigner({ current: oldKey, previous: [] }, time.clock).sign({ resource, params, expiresInSeconds: 3600 });
    const rotated = new UrlSigner({ current: newKey, previous: [oldKey] }, time.clock);
    assert.equal(rotated.verify({ resource, params, query: queryOf(before.query) }).keyId, "k1");
    const after = rotated.sign({ resource, params, expiresInSeconds: 3600 });
    assert.equal(after.params.kid, "k2");
    assert.equal(rotated.verify({ resource, params, query: queryOf(after.query) }).keyId, "k2");
    const retired = new UrlSigner({ current: newKey, previous: [] }, time.clock);
    assert.throws(() => retired.verify({ resource, params, query: queryOf(before.query) }), refusedWith("signature_invalid"));
  });

  void test("a content version is bound into the signature and returned", () => {
    const signer = new UrlSigner(ring, manualClock().clock);
    const signed = signer.sign({ resource, params, expiresInSeconds: 60, contentVersion: "0123456789abcdef" });
    assert.match(signed.query, /&v=0123456789abcdef&sig=/);
    const query = queryOf(signed.query);
    assert.equal(signer.verify({ resource, params, query }).contentVersion, "0123456789abcdef");
    assert.throws(() => signer.verify({ resource, params, query: { ...query, v: "0123456789abcdee" } }), refusedWith("signature_invalid"));
    assert.throws(() => signer.verify({ resource, params, query: { ...query, v: undefined } }), refusedWith("signature_invalid"));
    assert.throws(() => signer.verify({ resource, params, query: { ...query, v: "XYZ" } }), refusedWith("signature_invalid"));
    assert.throws(() => signer.sign({ resource, params, expiresInSeconds: 60, contentVersion: "not-hex" }), TypeError);
  });
});

void describe("loadKeyRing", () => {
  let dataDir: string;
  beforeEach(async () => {
    dataDir = await mkdtemp(join(tmpdir(), "imgvault-signing-"));
  });
  afterEach(async () => {
    await rm(dataDir, { recursive: true, force: true });
  });

  void test("uses configured keys, the first as current, and writes no file", async () => {
    const config = loadConfig({
      IMGVAULT_DATA_DIR: dataDir,
      IMGVAULT_SIGNING_KEYS: `new:${"n".repeat(32)}, old:${"o".repeat(40)}`,
    });
    const ring = await loadKeyRing(config.signingKeys, config.dataDir);
    assert.equal(ring.current.id, "new");
    assert.ok(ring.current.secret.equals(Buffer.from("n".repeat(32))));
    assert.deepEqual(ring.previous.map((previous) => previous.id), ["old"]);
    await assert.rejects(stat(join(dataDir, signingKeysFileName)), { code: "ENOENT" });
  });

  void test("configuration refuses short secrets, bad ids and duplicates, all at once", () => {
    assert.throws(
      () => loadConfig({ IMGVAULT_SIGNING_KEYS: `a:short,b c:${"x".repeat(32)},d:${"x".repeat(32)},d:${"y".repeat(32)}` }),
      (error: unknown) => error instanceof ConfigError && error.problems.length === 3,
    );
  });

  void test("generates a private key file on first start and reads the same key afterwards", async () => {
    const first = await loadKeyRing(undefined, dataDir);
    const path = join(dataDir, signingKeysFileName);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.equal(first.current.secret.length, 32);
    const second = await loadKeyRing(undefined, dataDir);
    assert.equal(second.current.id, first.current.id);
    assert.ok(second.current.secret.equals(first.current.secret));
  });

  void test("processes starting at once end up with one key", async () => {
    const rings = await Promise.all(Array.from({ length: 8 }, () => loadKeyRing(undefined, dataDir)));
    assert.equal(new Set(rings.map((ring) => ring.current.secret.toString("hex"))).size, 1);
  });

  void test("rotation adds a current key and keeps the old ones verifying", async () => {
    const time = manualClock();
    const before = await loadKeyRing(undefined, dataDir, time.clock);
    const oldUrl = new UrlSigner(before, time.clock).sign({ resource, params, expiresInSeconds: 3600 });
    const after = await rotateKeyFile(dataDir, time.clock);
    assert.notEqual(after.current.id, before.current.id);
    assert.deepEqual(after.previous.map((previous) => previous.id), [before.current.id]);
    const reloaded = await loadKeyRing(undefined, dataDir, time.clock);
    assert.equal(reloaded.current.id, after.current.id);
    assert.doesNotThrow(() => new UrlSigner(reloaded, time.clock).verify({ resource, params, query: queryOf(oldUrl.query) }));
    assert.equal((await stat(join(dataDir, signingKeysFileName))).mode & 0o777, 0o600);
  });

  void test("a damaged key file stops start-up with a ConfigError naming it", async () => {
    const path = join(dataDir, signingKeysFileName);
    for (const content of [
      "{not json",
      JSON.stringify({ current: "a", keys: [] }),
      JSON.stringify({ current: "a", keys: [{ id: "a", secret: "c2hvcnQ" }] }),
      JSON.stringify({ current: "b", keys: [{ id: "a", secret: randomBytes(32).toString("base64url") }] }),
    ]) {
      await writeFile(path, content);
      await assert.rejects(loadKeyRing(undefined, dataDir), (error: unknown) => {
        assert.ok(error instanceof ConfigError, content);
        assert.match(error.message, new RegExp(signingKeysFileName));
        return true;
      });
    }
    assert.ok((await readFile(path, "utf8")).includes('"b"'), "the file is left for the operator to fix");
  });
});
