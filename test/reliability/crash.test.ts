/**
 * Crash consistency: the real server as a child process under concurrent uploads, replacements
 * and deletes, killed with SIGKILL at a random moment, several times over the same data. After
 * each kill: `imgvault fsck --repair` finds nothing it cannot repair (only crash leftovers), and the
 * restarted server holds exactly what was acknowledged: every 2xx upload byte-identical, every
 * acknowledged delete gone, requests cut off by the kill either applied whole or not at all, and
 * no partial file under any name.
 */
import assert from "node:assert/strict";
import { createHash, randomInt } from "node:crypto";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { test } from "node:test";
import sharp from "sharp";
import { loadConfig } from "../../src/config.js";
import { createServices } from "../../src/services/index.js";
import { fsck, type FsckReport } from "../../src/services/fsck.js";
import { runCli, startServer, type ServerProcess } from "../helpers/cli.js";

interface Image {
  bytes: Buffer;
  sha256: string;
}

/** A name's state: the hash of its bytes, or absent. */
type State = string;
const absent: State = "absent";

interface Tracked {
  /** The state the last acknowledged (2xx) request left. */
  acknowledged: State;
  /** States a request cut off by the kill may have left: it committed whole, or not at all. */
  possible: Set<State> | undefined;
  busy: boolean;
}

const rounds = 5;
const workers = 8;
const serverEnv = {
  // One key uploads from many workers at once, on purpose.
  IMGVAULT_MAX_CONCURRENT_UPLOADS_PER_KEY: "0",
  IMGVAULT_IMAGE_QUEUE_LIMIT: "256",
};

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Distinct real images, some large enough that a kill often lands while their bytes are written. */
async function makeImages(count: number): Promise<Image[]> {
  const images: Image[] = [];
  for (let index = 0; index < count; index += 1) {
    const size = index % 4 === 0 ? 480 : 64 + index * 7;
    const image = sharp({ create: { width: size, height: size, channels: 3, background: { r: index * 9, g: 40, b: 200 - index }, noise: { type: "gaussian", mean: 128, sigma: 50 } } });
    const bytes = index % 2 === 0 ? await image.png().toBuffer() : await image.jpeg({ quality: 90 }).toBuffer();
    images.push({ bytes, sha256: sha256(bytes) });
  }
  return images;
}

async function repairOffline(dataDir: string): Promise<FsckReport> {
  const services = await createServices(loadConfig({ IMGVAULT_DATA_DIR: dataDir, IMGVAULT_GC_GRACE_SECONDS: "0" }));
  try {
    return await fsck(services, { repair: true });
  } finally {
    await services.close();
  }
}

async function issueKey(dataDir: string): Promise<string> {
  const services = await createServices(loadConfig({ IMGVAULT_DATA_DIR: dataDir }));
  try {
    const { user } = await services.accounts.ensureUser("crash", "correct horse battery staple");
    return (await services.accounts.issueKey(user.id)).key;
  } finally {
    await services.close();
  }
}

test("SIGKILL at random moments under concurrent writes loses nothing acknowledged and leaves nothing partial", { timeout: 180_000 }, async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), "imgvault-crash-"));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const images = await makeImages(24);
  const byHash = new Map(images.map((image) => [image.sha256, image]));
  const key = await issueKey(dataDir);
  const headers = { authorization: `Token ${key}` };
  const tracked = new Map<string, Tracked>();
  let nextName = 0;
  let server: ServerProcess | undefined;
  t.after(async () => {
    await server?.stop("SIGKILL");
  });

  for (let round = 0; round < rounds; round += 1) {
    server = await startServer(["--data-dir", dataDir], serverEnv);
    const url = server.url;
    await verify(url, `after restart ${round}`);

    // Kill moments spread over the workload, a different stretch each round, counted from the
    // first acknowledgement so that every kill lands in real work, not in a cold start.
    const killAfterMs = round * 250 + randomInt(250);
    t.diagnostic(`round ${round}: SIGKILL ${killAfterMs} ms after the first acknowledgement`);
    let killed = false;
    let acknowledged = 0;
    let firstAcknowledged: () => void = () => {};
    const started = new Promise<void>((resolve) => (firstAcknowledged = resolve));
    const serverErrors: string[] = [];

    const worker = async () => {
      while (!killed) {
        const present = [...tracked.entries()].filter(([, entry]) => !entry.busy && entry.possible === undefined && entry.acknowledged !== absent);
        const roll = randomInt(100);
        const image = images[randomInt(images.length)]!;
        let name: string;
        let method: "POST" | "PATCH" | "DELETE";
        let intended: State;
        if (roll < 45 || present.length === 0) {
          name = `img-${nextName++}.${image.bytes[0] === 0x89 ? "png" : "jpg"}`;
          tracked.set(name, { acknowledged: absent, possible: undefined, busy: true });
          method = "POST";
          intended = image.sha256;
        } else {
          name = present[randomInt(present.length)]![0];
          method = roll < 80 ? "PATCH" : "DELETE";
          intended = method === "PATCH" ? image.sha256 : absent;
        }
        const entry = tracked.get(name)!;
        entry.busy = true;
        try {
          let body: FormData | undefined;
          if (method !== "DELETE") {
            body = new FormData();
            body.append("image", new Blob([new Uint8Array(image.bytes)]), name);
          }
          const target = method === "POST" ? `${url}/image/` : `${url}/image/${encodeURIComponent(name)}/`;
          const response = await fetch(target, { method, headers, body });
          const text = await response.text();
          if (response.status >= 500) serverErrors.push(`${method} ${name}: ${response.status} ${text}`);
          else if (response.ok) {
            if (method === "POST") assert.equal((JSON.parse(text) as { name: string }).name, name, "fresh names are stored as given");
            entry.acknowledged = intended;
            acknowledged += 1;
            firstAcknowledged();
          } else {
            assert.fail(`${method} ${name} refused: ${response.status} ${text}`);
          }
        } catch (error) {
          if (!killed) throw error;
          // Cut off by the kill: applied whole or not at all, we cannot know which.
          entry.possible = new Set([entry.acknowledged, intended]);
        } finally {
          entry.busy = false;
        }
      }
    };

    const running = Array.from({ length: workers }, () => worker());
    await Promise.race([started, Promise.all(running)]);
    await sleep(killAfterMs);
    killed = true;
    await server.stop("SIGKILL");
    await Promise.all(running);
    assert.deepEqual(serverErrors, [], "no 5xx before the kill");
    t.diagnostic(`round ${round}: ${acknowledged} acknowledged, ${[...tracked.values()].filter((entry) => entry.possible).length} cut off`);

    // With the server dead nothing is in flight, so leftovers of any age may go. (The same service
    // as `imgvault fsck --repair`, in process to keep the test short; the command runs at the end.)
    const report = await repairOffline(dataDir);
    assert.deepEqual(report.problems.filter((problem) => !problem.repaired), [], "fsck repaired every problem");
    const kinds = new Set(report.problems.map((problem) => problem.kind));
    for (const kind of kinds) assert.ok(["temp_file", "orphan_blob", "stuck_deleting"].includes(kind), `only crash leftovers, got ${kind}`);
  }

  server = await startServer(["--data-dir", dataDir], serverEnv);
  await verify(server.url, "at the end");
  await server.stop();
  const final = await runCli(["fsck", "--data-dir", dataDir]);
  assert.equal(final.code, 0, `fsck is clean: ${final.stdout}${final.stderr}`);
  assert.ok([...tracked.values()].some((entry) => entry.acknowledged !== absent), "the workload stored images");

  /** The server holds exactly the acknowledged states (or, for cut-off requests, one possible state). */
  async function verify(url: string, when: string): Promise<void> {
    const listed = new Map<string, string>();
    let next: string | undefined = `${url}/image/?limit=1000`;
    while (next) {
      const response: Response = await fetch(next, { headers });
      assert.equal(response.status, 200);
      for (const image of (await response.json()) as Array<{ name: string; sha256: string }>) listed.set(image.name, image.sha256);
      next = /<([^>]+)>;\s*rel="next"/.exec(response.headers.get("link") ?? "")?.[1];
    }
    for (const [name, sha] of listed) {
      assert.ok(tracked.has(name), `${when}: ${name} is a name the workload used`);
      assert.ok(byHash.has(sha), `${when}: ${name} holds one of the uploaded images, not a partial file`);
      const response = await fetch(`${url}/image/${encodeURIComponent(name)}/`, { headers });
      assert.equal(response.status, 200, `${when}: ${name} is readable`);
      assert.equal(sha256(Buffer.from(await response.arrayBuffer())), sha, `${when}: ${name} is byte-identical to what was uploaded`);
    }
    for (const [name, entry] of tracked) {
      const actual = listed.get(name) ?? absent;
      if (entry.possible) {
        assert.ok(entry.possible.has(actual), `${when}: ${name} was cut off and must be whole or untouched, is ${actual.slice(0, 12)}`);
        entry.acknowledged = actual;
        entry.possible = undefined;
      } else {
        assert.equal(actual, entry.acknowledged, `${when}: ${name} is as acknowledged (${entry.acknowledged === absent ? "deleted" : "stored"})`);
      }
    }
  }
});
