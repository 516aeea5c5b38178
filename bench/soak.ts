/**
 * Soak test, run by hand: `npx tsx bench/soak.ts`. Starts the real server on a temporary data
 * directory, seeds it over HTTP, then drives a mixed workload (70% GET of an image, 10% list,
 * 10% upload, 5% PATCH, 5% DELETE) from a fixed number of connections, each as fast as the server
 * answers, for a while. Prints throughput, p50/p99 latency per operation, the count of 5xx (which
 * must be 0) and the server's peak RSS (VmHWM from /proc), then stops the server with SIGTERM and
 * runs `imgvault fsck` on what is left. Exits non-zero when a 5xx was seen or fsck is not clean.
 *
 * Settings (environment): SOAK_DURATION seconds (60), SOAK_CONNECTIONS concurrent clients (16),
 * SOAK_USERS users the clients are spread over (4), SOAK_SEED images uploaded first (200),
 * SOAK_SERVER=tsx|dist (tsx; dist runs the built JS, `npm run build` first), SOAK_KEEP=1 keeps the
 * data directory.
 */
import { readFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { availableParallelism, cpus, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { killAllChildren, spawnTracked, stopChild, waitForLine } from "./children.js";

const root = fileURLToPath(new URL("..", import.meta.url));

function setting(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

const settings = {
  durationS: setting("SOAK_DURATION", 60),
  connections: setting("SOAK_CONNECTIONS", 16),
  users: setting("SOAK_USERS", 4),
  seed: setting("SOAK_SEED", 200),
  server: process.env.SOAK_SERVER === "dist" ? ("dist" as const) : ("tsx" as const),
  keep: process.env.SOAK_KEEP === "1",
};

type Operation = "get" | "list" | "upload" | "patch" | "delete";
const mix: Array<[Operation, number]> = [
  ["get", 70],
  ["list", 10],
  ["upload", 10],
  ["patch", 5],
  ["delete", 5],
];

function progress(message: string): void {
  process.stderr.write(`[soak] ${message}\n`);
}

function cli(args: string[]): { command: string; args: string[] } {
  return settings.server === "dist"
    ? { command: process.execPath, args: [join(root, "dist/cli/main.js"), ...args] }
    : { command: process.execPath, args: ["--import", "tsx", join(root, "src/cli/main.ts"), ...args] };
}

/** The environment without the caller's imgvault settings: the soak runs the defaults. */
function cleanEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (!/^(IMGVAULT_|S3_|DATABASE_|STORAGE$|LOG_LEVEL$)/.test(name)) env[name] = value;
  }
  return { ...env, LOG_LEVEL: "warn" };
}

async function runCli(args: string[], stdin = ""): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const { command, args: argv } = cli(args);
  const child = spawnTracked(command, argv, { cwd: root, env: cleanEnv(), stdio: ["pipe", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin?.end(stdin);
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  return { code, stdout, stderr };
}

/** Distinct real images of a few formats and sizes (a few KB to ~150 KB), generated once. */
async function makeImages(count: number): Promise<Array<{ bytes: Buffer; type: string; extension: string }>> {
  const images = [];
  for (let index = 0; index < count; index += 1) {
    const size = 64 + ((index * 37) % 448);
    const base = sharp({ create: { width: size, height: size, channels: 3, background: { r: index * 7, g: 128, b: 255 - index * 5 }, noise: { type: "gaussian", mean: 120, sigma: 30 } } });
    const kind = index % 3;
    if (kind === 0) images.push({ bytes: await base.jpeg({ quality: 85 }).toBuffer(), type: "image/jpeg", extension: "jpg" });
    else if (kind === 1) images.push({ bytes: await base.png().toBuffer(), type: "image/png", extension: "png" });
    else images.push({ bytes: await base.webp({ quality: 80 }).toBuffer(), type: "image/webp", extension: "webp" });
  }
  return images;
}

/** Peak and current resident memory of a process, from /proc (Linux). */
function memoryOf(pid: number): { peakKiB: number; currentKiB: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const field = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? NaN);
    return { peakKiB: field("VmHWM"), currentKiB: field("VmRSS") };
  } catch {
    return undefined;
  }
}

function percentile(sorted: Float64Array, fraction: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(fraction * sorted.length))]!;
}

interface Tally {
  latenciesMs: number[];
  byStatus: Map<number, number>;
  failures: number;
}

async function main(): Promise<number> {
  const dataDir = await mkdtemp(join(tmpdir(), "imgvault-soak-"));
  progress(`data directory ${dataDir}`);
  try {
    const keys: string[] = [];
    for (let index = 0; index < settings.users; index += 1) {
      const issued = await runCli(["get-access-key", "--username", `soak${index}`, "--password-stdin", "--data-dir", dataDir], "soak-password-123\n");
      if (issued.code !== 0) throw new Error(`get-access-key failed: ${issued.stderr}`);
      keys.push(issued.stdout.trim().split("\n").at(-1)!);
    }
    const images = await makeImages(40);

    const { command, args } = cli(["serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", dataDir]);
    const server = spawnTracked(command, args, { cwd: root, env: cleanEnv(), stdio: ["ignore", "ignore", "pipe"] });
    const url = await waitForLine(server, server.stderr!, /imgvault listening on (\S+)/, "server");
    const serverErrors: string[] = [];
    server.stderr?.on("data", (chunk: Buffer) => {
      if (serverErrors.length < 20) serverErrors.push(chunk.toString().slice(0, 500));
    });
    progress(`server ${server.pid} on ${url}`);

    /** Names each user has, as far as the clients know (conflicting operations are allowed; they answer 404). */
    const names = keys.map(() => [] as string[]);
    let counter = 0;
    const form = () => {
      const image = images[Math.floor(Math.random() * images.length)]!;
      const body = new FormData();
      body.append("image", new Blob([new Uint8Array(image.bytes)], { type: image.type }), `soak-${counter++}.${image.extension}`);
      return body;
    };
    const pick = (user: number) => names[user]![Math.floor(Math.random() * names[user]!.length)];

    progress(`seeding ${settings.seed} images`);
    for (let index = 0; index < settings.seed; index += 1) {
      const user = index % keys.length;
      const response = await fetch(`${url}/image/`, { method: "POST", headers: { authorization: `Token ${keys[user]}` }, body: form() });
      if (response.status !== 201) throw new Error(`seed upload: ${response.status} ${await response.text()}`);
      names[user]!.push(((await response.json()) as { name: string }).name);
    }

    const tallies = new Map<Operation, Tally>(mix.map(([operation]) => [operation, { latenciesMs: [], byStatus: new Map(), failures: 0 }]));
    const choose = (): Operation => {
      let roll = Math.random() * 100;
      for (const [operation, weight] of mix) {
        if ((roll -= weight) < 0) return operation;
      }
      return "get";
    };

    const memorySamples: number[] = [];
    const sampler = setInterval(() => {
      const memory = memoryOf(server.pid!);
      if (memory) memorySamples.push(memory.currentKiB);
    }, 1000);

    progress(`${settings.durationS} s of mixed load from ${settings.connections} connections`);
    const endAt = performance.now() + settings.durationS * 1000;
    const client = async (index: number) => {
      const user = index % keys.length;
      const headers = { authorization: `Token ${keys[user]}` };
      while (performance.now() < endAt) {
        let operation = choose();
        const name = pick(user);
        if (name === undefined && operation !== "list") operation = "upload";
        const started = performance.now();
        let status = 0;
        try {
          let response: Response;
          switch (operation) {
            case "get":
              response = await fetch(`${url}/image/${encodeURIComponent(name!)}/`, { headers });
              break;
            case "list":
              response = await fetch(`${url}/image/?limit=100`, { headers });
              break;
            case "upload":
              response = await fetch(`${url}/image/`, { method: "POST", headers, body: form() });
              break;
            case "patch":
              response = await fetch(`${url}/image/${encodeURIComponent(name!)}/`, { method: "PATCH", headers, body: form() });
              break;
            case "delete":
              response = await fetch(`${url}/image/${encodeURIComponent(name!)}/`, { method: "DELETE", headers });
              break;
          }
          const body = await response.arrayBuffer();
          status = response.status;
          if (operation === "upload" && status === 201) names[user]!.push((JSON.parse(Buffer.from(body).toString()) as { name: string }).name);
          if (operation === "delete" && (status === 200 || status === 404)) {
            const at = names[user]!.indexOf(name!);
            if (at >= 0) names[user]!.splice(at, 1);
          }
        } catch (error) {
          tallies.get(operation)!.failures += 1;
          if (tallies.get(operation)!.failures < 3) progress(`${operation} failed: ${String(error)}`);
        }
        const tally = tallies.get(operation)!;
        tally.latenciesMs.push(performance.now() - started);
        tally.byStatus.set(status, (tally.byStatus.get(status) ?? 0) + 1);
      }
    };
    const startedAt = performance.now();
    await Promise.all(Array.from({ length: settings.connections }, (_, index) => client(index)));
    const elapsedS = (performance.now() - startedAt) / 1000;
    clearInterval(sampler);
    const memory = memoryOf(server.pid!);

    progress("stopping the server (SIGTERM)");
    const exited = new Promise<number | null>((resolve) => server.once("exit", resolve));
    await stopChild(server, 15_000);
    const exitCode = await exited;
    progress("running imgvault fsck");
    const fsck = await runCli(["fsck", "--data-dir", dataDir]);

    // The report.
    const all = new Float64Array(mix.flatMap(([operation]) => tallies.get(operation)!.latenciesMs)).sort();
    let total = 0;
    let serverFailures = 0;
    const rows: string[] = [];
    for (const [operation, weight] of mix) {
      const tally = tallies.get(operation)!;
      const sorted = new Float64Array(tally.latenciesMs).sort();
      const count = sorted.length;
      total += count;
      const fivexx = [...tally.byStatus].filter(([status]) => status >= 500).reduce((sum, [, n]) => sum + n, 0);
      serverFailures += fivexx + tally.failures;
      const statuses = [...tally.byStatus].sort(([a], [b]) => a - b).map(([status, n]) => `${status}×${n}`).join(" ");
      rows.push(
        `| ${operation.padEnd(6)} | ${String(weight).padStart(3)}% | ${String(count).padStart(8)} | ${(count / elapsedS).toFixed(1).padStart(8)} | ${percentile(sorted, 0.5).toFixed(2).padStart(7)} | ${percentile(sorted, 0.99).toFixed(2).padStart(7)} | ${String(fivexx + tally.failures).padStart(4)} | ${statuses} |`,
      );
    }
    const cpuModel = cpus()[0]?.model ?? "unknown CPU";
    const lines = [
      "",
      `imgvault soak: ${elapsedS.toFixed(1)} s, ${settings.connections} connections over ${settings.users} users, ${settings.seed} seeded images, server ${settings.server}, ${availableParallelism()} × ${cpuModel}`,
      "",
      "| op     | mix  | requests |    req/s | p50 ms  | p99 ms  | 5xx  | statuses |",
      "|--------|------|----------|----------|---------|---------|------|----------|",
      ...rows,
      `| total  | 100% | ${String(total).padStart(8)} | ${(total / elapsedS).toFixed(1).padStart(8)} | ${percentile(all, 0.5).toFixed(2).padStart(7)} | ${percentile(all, 0.99).toFixed(2).padStart(7)} | ${String(serverFailures).padStart(4)} | |`,
      "",
      `5xx responses and failed requests: ${serverFailures}`,
      memory
        ? `server peak RSS (VmHWM): ${(memory.peakKiB / 1024).toFixed(1)} MiB; RSS at the end ${(memory.currentKiB / 1024).toFixed(1)} MiB; RSS sampled each second: min ${(Math.min(...memorySamples) / 1024).toFixed(1)}, max ${(Math.max(...memorySamples) / 1024).toFixed(1)} MiB`
        : "server peak RSS: unavailable (no /proc)",
      `server exit on SIGTERM: ${exitCode}`,
      `fsck (exit ${fsck.code}): ${fsck.stdout.trim()}`,
    ];
    if (serverErrors.length > 0) lines.push("", "server stderr (first lines):", ...serverErrors);
    process.stdout.write(`${lines.join("\n")}\n`);
    return serverFailures === 0 && fsck.code === 0 && exitCode === 0 ? 0 : 1;
  } finally {
    killAllChildren();
    if (settings.keep) progress(`kept ${dataDir}`);
    else await rm(dataDir, { recursive: true, force: true });
  }
}

process.on("SIGINT", () => {
  killAllChildren();
  process.exit(130);
});

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    killAllChildren();
    process.stderr.write(`${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
