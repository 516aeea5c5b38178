import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { buildApp } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";
import { runCli } from "../helpers/cli.js";

const lastLine = (text: string) => text.trim().split("\n").at(-1) ?? "";

describe("key commands of the CLI", () => {
  test("get-access-key --expires-in, create-key with label/scope/expiry, list-keys, rotate-key and revoke-key", async (t) => {
    const dataDir = await mkdtemp(join(tmpdir(), "imgvault-cli-keys-"));
    t.after(() => rm(dataDir, { recursive: true, force: true }));
    const cli = (args: string[], stdin?: string) => runCli([...args, "--data-dir", dataDir], { stdin });

    const first = await cli(["get-access-key", "--username", "dora", "--password-stdin", "--expires-in", "30d"], "explorer\n");
    assert.equal(first.code, 0, first.stderr);
    const created = await cli(["create-key", "--username", "dora", "--label", "viewer", "--scope", "read", "--expires-in", "12h"]);
    assert.equal(created.code, 0, created.stderr);
    const readKey = lastLine(created.stdout);
    assert.match(readKey, /^ivk_/);

    const listed = await cli(["list-keys", "--username", "dora", "--json"]);
    assert.equal(listed.code, 0, listed.stderr);
    const keys = JSON.parse(listed.stdout) as Array<{ id: string; label: string; scope: string; expires_at: string | null; revoked_at: string | null }>;
    assert.equal(keys.length, 2);
    assert.equal(listed.stdout.includes(readKey), false, "list-keys never prints a secret");
    const viewer = keys.find((key) => key.label === "viewer")!;
    assert.equal(viewer.scope, "read");
    const hoursLeft = (Date.parse(viewer.expires_at!) - Date.now()) / 3_600_000;
    assert.ok(hoursLeft > 11 && hoursLeft <= 12, `expires in ${hoursLeft} hours`);
    const daysLeft = (Date.parse(keys.find((key) => key.label === "cli")!.expires_at!) - Date.now()) / 86_400_000;
    assert.ok(daysLeft > 29 && daysLeft <= 30, `expires in ${daysLeft} days`);

    const rotated = await cli(["rotate-key", "--username", "dora", viewer.id]);
    assert.equal(rotated.code, 0, rotated.stderr);
    const newKey = lastLine(rotated.stdout);
    assert.notEqual(newKey, readKey);

    // The keys behave so over HTTP: the old one is revoked, the new one keeps the read scope.
    const app = await buildApp(loadConfig({ IMGVAULT_DATA_DIR: dataDir }), { logger: false });
    t.after(() => app.close());
    assert.equal((await app.inject({ method: "GET", url: "/image/", headers: { authorization: `Token ${readKey}` } })).statusCode, 401);
    assert.equal((await app.inject({ method: "GET", url: "/image/", headers: { authorization: `Token ${newKey}` } })).statusCode, 200);
    assert.equal((await app.inject({ method: "DELETE", url: "/image/x/", headers: { authorization: `Token ${newKey}` } })).statusCode, 403);
    const after = (await app.inject({ method: "GET", url: "/api/keys/", headers: { authorization: `Token ${newKey}` } })).json<Array<{ id: string; label: string; scope: string }>>();
    const replacement = after.find((key) => key.label === "viewer" && key.id !== viewer.id)!;
    assert.equal(replacement.scope, "read");
    await app.close();

    const revoked = await cli(["revoke-key", "--username", "dora", replacement.id]);
    assert.equal(revoked.code, 0, revoked.stderr);
    for (const bad of [["--expires-in", "soon"], ["--expires-in", "0"], ["--scope", "admin"]]) {
      const refused = await cli(["create-key", "--username", "dora", ...bad]);
      assert.equal(refused.code, 1, `${bad.join(" ")}: ${refused.stderr}`);
    }
    assert.equal((await cli(["rotate-key", "--username", "dora", "key_nope"])).code, 1);
  });
});
