import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";
import { fixture } from "../helpers/fixtures.js";
import { runCli, startServer } from "../helpers/cli.js";

async function tempDataDir(t: { after(fn: () => Promise<void>): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "imgvault-cli-"));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

describe("imgvault command line", () => {
  test("get-access-key prints a key that works at once against a running server", async (t) => {
    const dataDir = await tempDataDir(t);
    const server = await startServer(["--data-dir", dataDir]);
    t.after(() => server.stop().then(() => undefined));

    const result = await runCli(["get-access-key", "--username", "carol", "--password-stdin", "--data-dir", dataDir], {
      stdin: "hunter2\n",
    });
    assert.equal(result.code, 0, result.stderr);
    const key = result.stdout.trim().split("\n").at(-1)!;
    assert.match(key, /^ivk_/);
    assert.match(result.stderr, /Created user "carol"/);

    const bytes = await readFile(fixture("valid/small.png").path);
    const form = new FormData();
    form.append("image", new Blob([new Uint8Array(bytes)]), "cli.png");
    const created = await fetch(`${server.url}/image/`, { method: "POST", headers: { Authorization: `Token ${key}` }, body: form });
    assert.equal(created.status, 201);
    const fetched = await fetch(`${server.url}/image/cli.png/`, { headers: { Authorization: `Token ${key}` } });
    assert.equal(fetched.status, 200);
    assert.ok(Buffer.from(await fetched.arrayBuffer()).equals(bytes));

    // A second call for an existing user checks the password instead of creating anything.
    const wrong = await runCli(["get-access-key", "--username", "carol", "--password-stdin", "--data-dir", dataDir], { stdin: "nope\n" });
    assert.equal(wrong.code, 1);
    assert.equal(wrong.stdout, "");
    const login = await fetch(`${server.url}/api/token/`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: "username=carol&password=hunter2",
    });
    assert.equal(login.status, 200);
    assert.equal(await server.stop(), 0, "SIGTERM shuts down cleanly with exit 0");
  });

  test("create-user, set-password, list-keys and revoke-key manage accounts", async (t) => {
    const dataDir = await tempDataDir(t);
    const base = ["--data-dir", dataDir];
    assert.equal((await runCli(["create-user", "--username", "dave", "--password-stdin", ...base], { stdin: "one\n" })).code, 0);
    const duplicate = await runCli(["create-user", "--username", "dave", "--password-stdin", ...base], { stdin: "one\n" });
    assert.equal(duplicate.code, 1);
    assert.match(duplicate.stderr, /already exists/);
    assert.equal((await runCli(["set-password", "--username", "dave", "--password-stdin", ...base], { stdin: "two\n" })).code, 0);
    assert.equal((await runCli(["get-access-key", "--username", "dave", "--password-stdin", ...base], { stdin: "one\n" })).code, 1);
    const issued = await runCli(["get-access-key", "--username", "dave", "--password-stdin", "--label", "laptop", ...base], { stdin: "two\n" });
    assert.equal(issued.code, 0);
    const key = issued.stdout.trim();

    const listed = await runCli(["list-keys", "--username", "dave", "--json", ...base]);
    const keys = JSON.parse(listed.stdout) as Array<{ id: string; label: string; display_prefix: string }>;
    assert.equal(keys.length, 1);
    assert.equal(keys[0]!.label, "laptop");
    assert.ok(key.startsWith(keys[0]!.display_prefix));
    assert.equal(listed.stdout.includes(key), false, "list-keys never shows the secret");

    assert.equal((await runCli(["revoke-key", "--username", "dave", keys[0]!.id, ...base])).code, 0);
    const afterRevoke = JSON.parse((await runCli(["list-keys", "--username", "dave", "--json", ...base])).stdout) as Array<{ revoked_at: string | null }>;
    assert.ok(afterRevoke[0]!.revoked_at);
  });

  test("--help documents each command; unknown commands and bad flags fail", async () => {
    const help = await runCli(["--help"]);
    assert.equal(help.code, 0);
    for (const command of ["serve", "get-access-key", "create-user", "set-password", "list-keys", "revoke-key"]) {
      assert.match(help.stdout, new RegExp(command));
      const own = await runCli([command, "--help"]);
      assert.equal(own.code, 0);
      assert.match(own.stdout, /Usage: imgvault/);
    }
    assert.equal((await runCli(["frobnicate"])).code, 2);
    assert.equal((await runCli(["serve", "--no-such-flag"])).code, 2);
  });

  test("without a terminal, get-access-key asks for --password-stdin", async (t) => {
    const dataDir = await tempDataDir(t);
    const result = await runCli(["get-access-key", "--username", "erin", "--data-dir", dataDir]);
    assert.equal(result.code, 1);
    assert.match(result.stderr, /--password-stdin/);
  });
});

describe("imgvault get-access-key on a terminal", () => {
  test("asks for the username and a hidden password, then prints a working key", async (t) => {
    const dataDir = await tempDataDir(t);
    const { spawn } = await import("node:child_process");
    const { repoRoot } = await import("../helpers/cli.js");
    // util-linux `script` gives the command a real pseudo-terminal, as a person's shell would.
    const command = `${process.execPath} --import tsx src/cli/main.ts get-access-key --data-dir ${dataDir}`;
    const child = spawn("script", ["-qec", command, "/dev/null"], { cwd: repoRoot, stdio: ["pipe", "pipe", "pipe"] });
    let output = "";
    let answered = { username: false, password: false };
    const done = new Promise<number | null>((resolve) => child.on("close", resolve));
    child.stdout.on("data", (chunk: Buffer) => {
      output += chunk.toString();
      if (!answered.username && output.includes("Username:")) {
        answered = { ...answered, username: true };
        child.stdin.write("frank\r");
      }
      if (!answered.password && output.includes("Password:")) {
        answered = { ...answered, password: true };
        child.stdin.write("tops3cret\r");
      }
    });
    assert.equal(await done, 0, output);
    assert.equal(output.includes("tops3cret"), false, "the password is not echoed");
    const key = /(ivk_[A-Za-z0-9_-]{32})/.exec(output)?.[1];
    assert.ok(key, output);
    const again = await runCli(["get-access-key", "--username", "frank", "--password-stdin", "--data-dir", dataDir], { stdin: "tops3cret\n" });
    assert.equal(again.code, 0, "the password typed on the terminal is the user's password");
  });
});
