import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, test } from "node:test";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { auth, buildTestApp, multipart } from "../helpers/app.js";
import { fixture } from "../helpers/fixtures.js";
import { filesUnder, upload } from "../helpers/http.js";

const png = fixture("valid/small.png").path;
const gif = fixture("valid/animated.gif").path;
const jpeg = fixture("valid/small.jpg").path;

/** Everything A has: the list as A sees it and the bytes of every image. */
async function snapshot(app: FastifyInstance, key: string): Promise<{ list: unknown; bytes: Record<string, string> }> {
  const listResponse = await app.inject({ method: "GET", url: "/image/?limit=1000", headers: auth(key) });
  const list = listResponse.json<Array<{ name: string }>>();
  const bytes: Record<string, string> = {};
  for (const image of list) {
    const response = await app.inject({ method: "GET", url: `/image/${encodeURIComponent(image.name)}/`, headers: auth(key) });
    bytes[image.name] = response.rawPayload.toString("base64");
  }
  return { list, bytes };
}

type Call = (url: string) => Promise<LightMyRequestResponse>;

/** What a response shows a client: status, error body, and the headers that could tell cases apart. */
function visible(response: LightMyRequestResponse) {
  return {
    status: response.statusCode,
    body: response.body,
    type: response.headers["content-type"],
    allow: response.headers.allow,
    length: response.headers["content-length"],
  };
}

describe("tenant isolation", () => {
  test("user B acting on A's images gets exactly what a missing image gets, and A's data is unchanged", async (t) => {
    const { app, userKey, dataDir } = await buildTestApp(t);
    const a = await userKey("tenant-a");
    const b = await userKey("tenant-b");
    const aUserId = (await app.services.accounts.findUser("tenant-a")).id;
    for (const [path, name] of [
      [png, "secret.png"],
      [gif, "shared.gif"],
      [jpeg, "holiday photo.jpg"],
      [png, "caf\u00e9.png"],
    ] as const) {
      assert.equal((await upload(app, a, path, name)).statusCode, 201);
    }
    // B owns a name A also owns, with other bytes, and one image to rename.
    assert.equal((await upload(app, b, jpeg, "shared.gif")).statusCode, 201);
    assert.equal((await upload(app, b, png, "mine.png")).statusCode, 201);
    const before = await snapshot(app, a);
    const blobsBefore = (await filesUnder(join(dataDir, "blobs"))).sort();

    const bytes = await readFile(png);
    const file = await multipart([{ bytes, filename: "x.png" }]);
    const rename = await multipart([], { name: "stolen.png" });
    const both = await multipart([{ bytes, filename: "x.png" }], { name: "stolen.png" });
    const calls: Record<string, Call> = {
      GET: (url) => app.inject({ method: "GET", url, headers: auth(b) }),
      HEAD: (url) => app.inject({ method: "HEAD", url, headers: auth(b) }),
      "GET If-None-Match": (url) => app.inject({ method: "GET", url, headers: { ...auth(b), "if-none-match": "*" } }),
      "GET Range": (url) => app.inject({ method: "GET", url, headers: { ...auth(b), range: "bytes=0-9" } }),
      "PATCH file": (url) => app.inject({ method: "PATCH", url, headers: { ...auth(b), ...file.headers }, payload: file.payload }),
      "PATCH rename": (url) => app.inject({ method: "PATCH", url, headers: { ...auth(b), ...rename.headers }, payload: rename.payload }),
      "PATCH both": (url) => app.inject({ method: "PATCH", url, headers: { ...auth(b), ...both.headers }, payload: both.payload }),
      DELETE: (url) => app.inject({ method: "DELETE", url, headers: auth(b) }),
      "DELETE If-Match": (url) =>
        app.inject({ method: "DELETE", url, headers: { ...auth(b), "if-match": `"${"0".repeat(64)}"` } }),
      PUT: (url) => app.inject({ method: "PUT", url, headers: auth(b) }),
    };
    // Each of A's names, and ways of spelling them or their place in storage in a URL.
    const targets: Array<[string, string]> = [
      ["secret.png", "/image/secret.png/"],
      ["secret.png", "/image/secret.png"],
      ["secret.png", "/image/%73ecret%2Epng/"],
      ["holiday photo.jpg", "/image/holiday%20photo.jpg/"],
      ["café.png (NFC)", "/image/caf%C3%A9.png/"],
      ["café.png (NFD)", "/image/cafe%CC%81.png/"],
      ["A's id as a path", `/image/${aUserId}%2Fsecret.png/`],
      ["..%2F to A", `/image/..%2F${aUserId}%2Fsecret.png/`],
      ["..%2F to a blob file of A's", `/image/..%2F..%2Fblobs%2F${encodeURIComponent(blobsBefore[0] ?? "")}/`],
      ["a blob's hash", `/image/${encodeURIComponent(blobsBefore[0]?.split("/").at(-1) ?? "")}/`],
    ];
    let cases = 0;
    for (const [what, url] of targets) {
      for (const [method, call] of Object.entries(calls)) {
        const missingUrl = url.replace(/secret|holiday%20photo|caf%C3%A9|cafe%CC%81|%73ecret/, "never-existed");
        const theirs = visible(await call(url));
        const missing = visible(await call(missingUrl === url ? "/image/never-existed.png/" : missingUrl));
        assert.ok(theirs.status >= 400 && theirs.status < 500, `${method} ${what}: ${theirs.status} ${theirs.body}`);
        assert.deepEqual(theirs, missing, `${method} ${what} answers as a missing image does`);
        cases += 1;
      }
    }
    assert.ok(cases >= 90);

    // Names are per user: B may take A's name for its own image, which leaves A's alone.
    const renamed = await upload(app, b, png, "x.png", { method: "PATCH", url: "/image/mine.png/", fields: { name: "secret.png" } });
    assert.equal(renamed.statusCode, 200, renamed.body);
    assert.equal(renamed.json().name, "secret.png");
    const replaced = await upload(app, b, gif, "y.gif", { method: "PATCH", url: "/image/secret.png/" });
    assert.equal(replaced.statusCode, 200);
    assert.equal((await app.inject({ method: "DELETE", url: "/image/shared.gif/", headers: auth(b) })).statusCode, 200);
    assert.equal((await upload(app, b, png, "secret.png")).json().name, "secret-2.png", "B's next free name depends on B's names only");

    // A cursor from A's listing only pages through B's own images.
    const aPage = await app.inject({ method: "GET", url: "/image/?limit=1", headers: auth(a) });
    const cursor = /cursor=([^&>]+)/.exec(String(aPage.headers.link))?.[1];
    assert.ok(cursor, "A's listing has a next page");
    const bNames = new Set((await app.inject({ method: "GET", url: "/image/", headers: auth(b) })).json<Array<{ name: string }>>().map((i) => i.name));
    const forged = await app.inject({ method: "GET", url: `/image/?limit=1000&cursor=${cursor}`, headers: auth(b) });
    assert.equal(forged.statusCode, 200);
    assert.equal(forged.headers["x-total-count"], String(bNames.size));
    const aHashes = new Set(Object.values(before.list as Array<{ sha256: string; name: string }>).map((i) => `${i.name}:${i.sha256}`));
    for (const image of forged.json<Array<{ name: string; sha256: string }>>()) {
      assert.ok(bNames.has(image.name), `${image.name} is B's`);
      assert.equal(aHashes.has(`${image.name}:${image.sha256}`) && !bNames.has(image.name), false);
    }

    // B cannot touch A's keys either.
    const aKeyId = (await app.inject({ method: "GET", url: "/api/keys/", headers: auth(a) })).json<Array<{ id: string }>>()[0]!.id;
    const theirKey = await app.inject({ method: "DELETE", url: `/api/keys/${aKeyId}/`, headers: auth(b) });
    const noKey = await app.inject({ method: "DELETE", url: "/api/keys/key_neverexisted/", headers: auth(b) });
    assert.deepEqual(visible(theirKey), visible(noKey));

    assert.deepEqual(await snapshot(app, a), before, "A's images, names, metadata and bytes are unchanged");
    const blobsAfter = new Set(await filesUnder(join(dataDir, "blobs")));
    for (const blob of blobsBefore) assert.ok(blobsAfter.has(blob), `blob ${blob} is still there`);
  });

  test("A and B may each own the same name, and each sees only their own", async (t) => {
    const { app, userKey } = await buildTestApp(t);
    const a = await userKey("same-a");
    const b = await userKey("same-b");
    assert.equal((await upload(app, a, png, "cat.png")).json().name, "cat.png");
    assert.equal((await upload(app, b, gif, "cat.png")).json().name, "cat.png");
    const aCat = await app.inject({ method: "GET", url: "/image/cat.png/", headers: auth(a) });
    const bCat = await app.inject({ method: "GET", url: "/image/cat.png/", headers: auth(b) });
    assert.ok(aCat.rawPayload.equals(await readFile(png)));
    assert.ok(bCat.rawPayload.equals(await readFile(gif)));
    assert.equal((await app.inject({ method: "DELETE", url: "/image/cat.png/", headers: auth(b) })).statusCode, 200);
    const still = await app.inject({ method: "GET", url: "/image/cat.png/", headers: auth(a) });
    assert.equal(still.statusCode, 200);
    assert.ok(still.rawPayload.equals(await readFile(png)));
    assert.deepEqual(
      (await app.inject({ method: "GET", url: "/image/", headers: auth(a) })).json<Array<{ name: string }>>().map((i) => i.name),
      ["cat.png"],
    );
  });
});
