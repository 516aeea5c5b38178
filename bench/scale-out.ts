/**
 * The core issue's GET and upload figures in the scale-out configuration beside the embedded one,
 * and for one scale-out node versus two: `npx tsx bench/scale-out.ts` (after
 * `source scripts/ci-services.sh`, which starts the S3 engine and exports S3_* and
 * TEST_DATABASE_URL). Prints one markdown table.
 *
 * Configurations, each on a fresh collection of BENCH_IMAGES rows plus the two fixtures:
 * - embedded: SQLite + files in a temporary data directory, one node;
 * - scale-out ×1: a fresh PostgreSQL database + a fresh S3 prefix, one node;
 * - scale-out ×2: the same backends, two nodes; the load is split evenly between them (one
 *   autocannon per node, half the connections each; req/s summed, p99 the worse of the two).
 * Measurements: GET of a ~10 KB PNG and a ~1 MB JPEG, cold (IMGVAULT_HOT_CACHE_BYTES=0: every GET
 * asks the database and reads the store) and hot (the default in-memory cache); the first and a
 * late list page; POST of a ~1 MB JPEG with new bytes each time.
 *
 * Settings (environment): BENCH_DURATION (10) and BENCH_WARMUP (2) seconds, BENCH_CONNECTIONS (10),
 * BENCH_UPLOAD_CONNECTIONS (8), BENCH_IMAGES (10000), BENCH_ONLY (png,jpeg,list,post),
 * BENCH_CONFIGS (embedded,scale-out-1,scale-out-2), BENCH_SERVER=dist|tsx (dist); before each measurement
 * it waits up to BENCH_QUIET_WAIT seconds (120) for the machine to be quiet (other processes, the
 * idle backends included, below BENCH_QUIET_CORES cores, 0.3).
 */
import type { ChildProcess } from "node:child_process";
import { createWriteStream } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { createRequire } from "node:module";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { loadConfig, type Config } from "../src/config.js";
import { openDatabase } from "../src/db/database.js";
import { AccountsService } from "../src/services/accounts.js";
import { systemClock } from "../src/services/clock.js";
import { createBlobStore } from "../src/storage/index.js";
import { createScaleOutBackend, scaleOutSkipReason, type ScaleOutBackend } from "../test/helpers/scale-out.js";
import { killAllChildren, spawnTracked, stopChild, waitForLine } from "./children.js";
import { cpuBetween, sampleCpu } from "./cpu.js";
import { ensureBuilt } from "./build.js";
import { photoJpeg, smallPng } from "./fixtures.js";
import { seedRows } from "./seed.js";

const root = fileURLToPath(new URL("..", import.meta.url));

// As in bench/run.ts: autocannon would decode every response body as UTF-8, measuring itself.
const requestsQueue = createRequire(import.meta.url)("autocannon/lib/pipelinedRequestsQueue.js") as { prototype: { addBody(data: unknown): void } };
requestsQueue.prototype.addBody = () => {};

function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

const settings = {
  duration: positive("BENCH_DURATION", 10),
  warmup: positive("BENCH_WARMUP", 2),
  connections: positive("BENCH_CONNECTIONS", 10),
  uploadConnections: positive("BENCH_UPLOAD_CONNECTIONS", 8),
  images: positive("BENCH_IMAGES", 10_000),
  only: new Set((process.env.BENCH_ONLY ?? "png,jpeg,list,post").split(",").map((part) => part.trim())),
  configs: (process.env.BENCH_CONFIGS ?? "embedded,scale-out-1,scale-out-2").split(",").map((part) => part.trim()),
  server: process.env.BENCH_SERVER === "tsx" ? ("tsx" as const) : ("dist" as const),
  quietCores: positive("BENCH_QUIET_CORES", 0.3),
  quietWait: positive("BENCH_QUIET_WAIT", 120),
};

function progress(message: string): void {
  process.stderr.write(`[bench:scale-out] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// Servers


/** The caller's environment without any imgvault, S3 or database setting: each node gets exactly `extra`. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(IMGVAULT_|S3_|DATABASE_|REDIS_|STORAGE$|LOG_LEVEL$)/.test(name)) continue;
    env[name] = value;
  }
  return { ...env, ...extra };
}

interface Node {
  child: ChildProcess;
  url: string;
}

async function startNode(name: string, dataDir: string, logDir: string, env: Record<string, string>): Promise<Node> {
  const [command, args] =
    settings.server === "dist"
      ? [process.execPath, [join(root, "dist/cli/main.js")]]
      : [process.execPath, ["--import", "tsx", join(root, "src/cli/main.ts")]];
  const log = createWriteStream(join(logDir, `${name}.log`));
  const child = spawnTracked(command, [...args, "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", dataDir], {
    cwd: root,
    env: cleanEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout?.pipe(log);
  child.stderr?.on("data", (chunk: Buffer) => log.write(chunk));
  const url = await waitForLine(child, child.stderr!, /imgvault listening on (\S+)/, `node ${name}`);
  return { child, url };
}

// ---------------------------------------------------------------------------------------------
// Collections

/** A user with a key, BENCH_IMAGES rows sharing one blob (database speed, like bench/seed.ts). */
async function seed(config: Config, file: string): Promise<string> {
  const database = await openDatabase(config.database);
  const blobs = createBlobStore(config.storage);
  try {
    await blobs.check();
    const accounts = new AccountsService(database.db, systemClock, 0);
    const { user } = await accounts.ensureUser("bench", "bench-password-123");
    const { key } = await accounts.issueKey(user.id);
    await seedRows(database, blobs, config, user.id, settings.images, file);
    return key;
  } finally {
    await blobs.close();
    await database.close();
  }
}

function multipartBody(fileName: string, bytes: Buffer, boundary: string): Buffer {
  return Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${fileName}"\r\nContent-Type: application/octet-stream\r\n\r\n`),
    bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
}

async function upload(node: Node, key: string, fileName: string, bytes: Buffer): Promise<string> {
  const boundary = "----imgvault-bench";
  const response = await fetch(`${node.url}/image/`, {
    method: "POST",
    headers: { authorization: `Token ${key}`, "content-type": `multipart/form-data; boundary=${boundary}` },
    body: new Uint8Array(multipartBody(fileName, bytes, boundary)),
  });
  const body = (await response.json()) as { name?: string };
  if (response.status !== 201 || !body.name) throw new Error(`upload of ${fileName}: ${response.status} ${JSON.stringify(body)}`);
  return body.name;
}

/** Every upload stores new bytes: a unique JPEG comment and file name per request (as bench/run.ts). */
function uploadBodies(jpeg: Buffer, boundary: string): () => Buffer {
  const digits = 16;
  const marker = "0".repeat(digits);
  const comment = Buffer.concat([Buffer.from([0xff, 0xfe, 0x00, digits + 2]), Buffer.from(marker)]);
  const unique = Buffer.concat([jpeg.subarray(0, 2), comment, jpeg.subarray(2)]);
  const template = multipartBody(`bench-${marker}.jpg`, unique, boundary);
  const nameAt = template.indexOf(marker);
  const commentAt = template.indexOf(marker, nameAt + digits);
  let counter = Math.floor(Math.random() * 1e9);
  return () => {
    counter += 1;
    const id = String(counter).padStart(digits, "0");
    const body = Buffer.from(template);
    body.write(id, nameAt, "latin1");
    body.write(id, commentAt, "latin1");
    return body;
  };
}

async function latePagePath(node: Node, key: string): Promise<string> {
  const pages = Math.max(1, Math.floor((settings.images * 0.95) / 100));
  let url = `${node.url}/image/`;
  for (let page = 1; page < pages; page += 1) {
    const response = await fetch(url, { headers: { authorization: `Token ${key}` } });
    await response.arrayBuffer();
    const next = /<([^>]+)>;\s*rel="next"/.exec(response.headers.get("link") ?? "")?.[1];
    if (!next) break;
    url = next;
  }
  return new URL(url).pathname + new URL(url).search;
}

// ---------------------------------------------------------------------------------------------
// Measuring

interface Figure {
  rps: number;
  p99: number;
  failures: number;
  /** Cores used by the imgvault nodes together, and by everything else (PostgreSQL, the S3 engine, …). */
  nodeCores: number;
  otherCores: number;
}

type Request = { path: string; method?: "GET" | "POST"; headers: Record<string, string>; body?: () => Buffer };

/** Waits until everything else on the machine uses few cores: a figure taken beside a test run measures the test run. */
async function waitForQuiet(): Promise<void> {
  const deadline = Date.now() + settings.quietWait * 1000;
  for (;;) {
    const before = sampleCpu([]);
    await sleep(1000);
    const other = cpuBetween(before, sampleCpu([]))?.other ?? 0;
    if (other <= settings.quietCores) return;
    if (Date.now() >= deadline) {
      progress(`other processes still use ${other.toFixed(2)} cores; measuring anyway`);
      return;
    }
  }
}

/** Load split evenly over the nodes: one autocannon per node, `connections` shared between them. */
async function measure(label: string, nodes: Node[], request: Request, connections: number): Promise<Figure> {
  const options = (node: Node, duration: number): autocannon.Options => ({
    url: node.url,
    duration,
    connections: Math.max(1, Math.round(connections / nodes.length)),
    requests: [
      {
        method: request.method ?? "GET",
        path: request.path,
        headers: request.headers,
        ...(request.body ? { setupRequest: (r: autocannon.Request) => ({ ...r, body: request.body!() }) } : {}),
      },
    ],
  });
  await waitForQuiet();
  if (settings.warmup > 0) await Promise.all(nodes.map((node) => autocannon(options(node, settings.warmup))));
  const pids = nodes.map((node) => node.child.pid ?? 0);
  const before = sampleCpu([...pids, process.pid]);
  const results = await Promise.all(nodes.map((node) => autocannon(options(node, settings.duration))));
  const use = cpuBetween(before, sampleCpu([...pids, process.pid]));
  const figure: Figure = {
    rps: results.reduce((sum, result) => sum + result.requests.average, 0),
    p99: Math.max(...results.map((result) => result.latency.p99)),
    failures: results.reduce((sum, result) => sum + result.non2xx + result.errors, 0),
    nodeCores: pids.reduce((sum, pid) => sum + (use?.byPid.get(pid) ?? 0), 0),
    otherCores: use?.other ?? 0,
  };
  progress(
    `${label}: ${Math.round(figure.rps)} req/s, p99 ${figure.p99} ms, nodes ${figure.nodeCores.toFixed(2)} cores, ` +
      `other ${figure.otherCores.toFixed(2)} cores${figure.failures ? `, ${figure.failures} FAILED` : ""}`,
  );
  return figure;
}

// ---------------------------------------------------------------------------------------------

interface Configuration {
  name: string;
  nodes: number;
  env: Record<string, string>;
  dataDir: string;
  dispose(): Promise<void>;
}

async function configuration(name: string, work: string): Promise<Configuration> {
  const dataDir = join(work, name);
  await mkdir(dataDir, { recursive: true });
  if (name === "embedded") return { name, nodes: 1, env: {}, dataDir, dispose: async () => {} };
  const nodes = name === "scale-out-2" ? 2 : 1;
  if (name !== "scale-out-1" && name !== "scale-out-2") throw new Error(`unknown configuration ${name}`);
  const backend: ScaleOutBackend = await createScaleOutBackend("bench");
  return { name, nodes, env: backend.env, dataDir, dispose: () => backend.dispose() };
}

const measurements = ["png cold", "png hot", "jpeg cold", "jpeg hot", "first page", "late page", "post"] as const;
type Measurement = (typeof measurements)[number];

async function runConfiguration(config: Configuration, work: string, png: Buffer, jpeg: Buffer, pngPath: string): Promise<Map<Measurement, Figure>> {
  const figures = new Map<Measurement, Figure>();
  progress(`${config.name}: seeding ${settings.images} images`);
  const key = await seed(loadConfig({ IMGVAULT_DATA_DIR: config.dataDir, ...config.env }), pngPath);
  const auth = { authorization: `Token ${key}` };
  // Each node has its own data directory (staging, variant cache); only the backends are shared.
  const nodeDirs = await Promise.all(
    Array.from({ length: config.nodes }, async (_, index) => {
      if (config.env.DATABASE_URL === undefined) return config.dataDir;
      const dir = join(config.dataDir, `node-${index}`);
      await mkdir(dir, { recursive: true });
      return dir;
    }),
  );
  const start = (label: string, extra: Record<string, string>) =>
    Promise.all(nodeDirs.map((dir, index) => startNode(`${config.name}-${label}-${index}`, dir, work, { ...config.env, ...extra })));
  const stop = (nodes: Node[]) => Promise.all(nodes.map((node) => stopChild(node.child)));

  let nodes = await start("cold", { IMGVAULT_HOT_CACHE_BYTES: "0" });
  const pngName = await upload(nodes[0]!, key, "small.png", png);
  const jpegName = await upload(nodes[0]!, key, "photo.jpg", jpeg);
  for (const [kind, name] of [["png", pngName], ["jpeg", jpegName]] as const) {
    if (settings.only.has(kind)) {
      figures.set(`${kind} cold`, await measure(`${config.name} GET ${kind} cold`, nodes, { path: `/image/${name}/`, headers: auth }, settings.connections));
    }
  }
  await stop(nodes);

  nodes = await start("hot", {});
  for (const [kind, name] of [["png", pngName], ["jpeg", jpegName]] as const) {
    if (settings.only.has(kind)) {
      figures.set(`${kind} hot`, await measure(`${config.name} GET ${kind} hot`, nodes, { path: `/image/${name}/`, headers: auth }, settings.connections));
    }
  }
  if (settings.only.has("list")) {
    const late = await latePagePath(nodes[0]!, key);
    figures.set("first page", await measure(`${config.name} first page`, nodes, { path: "/image/", headers: auth }, settings.connections));
    figures.set("late page", await measure(`${config.name} late page`, nodes, { path: late, headers: auth }, settings.connections));
  }
  if (settings.only.has("post")) {
    const boundary = "----imgvault-bench-upload";
    const body = uploadBodies(jpeg, boundary);
    figures.set(
      "post",
      await measure(
        `${config.name} POST`,
        nodes,
        { path: "/image/", method: "POST", headers: { ...auth, "content-type": `multipart/form-data; boundary=${boundary}` }, body },
        settings.uploadConnections,
      ),
    );
  }
  await stop(nodes);
  return figures;
}

const labels: Record<Measurement, (png: Buffer, jpeg: Buffer) => string> = {
  "png cold": (png) => `GET ${kb(png.length)} PNG, cold (database + store per GET)`,
  "png hot": (png) => `GET ${kb(png.length)} PNG, hot (memory)`,
  "jpeg cold": (_png, jpeg) => `GET ${kb(jpeg.length)} JPEG, cold`,
  "jpeg hot": (_png, jpeg) => `GET ${kb(jpeg.length)} JPEG, hot`,
  "first page": () => `GET /image/ (${settings.images.toLocaleString("en-US")} images), page 1`,
  "late page": () => "GET /image/, a late page via cursor",
  post: (_png, jpeg) => `POST ${kb(jpeg.length)} JPEG (new bytes each)`,
};

function kb(bytes: number): string {
  return `${Math.round(bytes / 1024).toLocaleString("en-US")} KB`;
}

function cell(figure: Figure | undefined): string {
  if (!figure) return "–";
  const rps = figure.rps < 100 ? figure.rps.toFixed(1) : Math.round(figure.rps).toLocaleString("en-US");
  return `${rps} / ${figure.p99} ms${figure.failures ? ` (${figure.failures} failed)` : ""}`;
}

async function main(): Promise<void> {
  if (settings.configs.some((name) => name.startsWith("scale-out")) && scaleOutSkipReason) {
    throw new Error(`${scaleOutSkipReason} (or BENCH_CONFIGS=embedded)`);
  }
  if (settings.server === "dist") ensureBuilt(progress);
  const work = await mkdtemp(join(tmpdir(), "imgvault-bench-scale-out-"));
  const configs: Configuration[] = [];
  try {
    const png = await smallPng();
    const jpeg = await photoJpeg();
    const pngPath = join(work, "small.png");
    await writeFile(pngPath, png);
    const results = new Map<string, Map<Measurement, Figure>>();
    for (const name of settings.configs) {
      const config = await configuration(name, work);
      configs.push(config);
      results.set(name, await runConfiguration(config, work, png, jpeg, pngPath));
      await sleep(1000);
    }
    const names = settings.configs;
    const header = `| Measurement (req/s / p99) | ${names.join(" | ")} |`;
    const lines = [header, `|---|${names.map(() => "---:").join("|")}|`];
    for (const measurement of measurements) {
      if (names.every((name) => !results.get(name)?.has(measurement))) continue;
      lines.push(`| ${labels[measurement](png, jpeg)} | ${names.map((name) => cell(results.get(name)?.get(measurement))).join(" | ")} |`);
    }
    const cores = (name: string) => {
      const figures = [...(results.get(name)?.values() ?? [])];
      const average = (pick: (figure: Figure) => number) => figures.reduce((sum, figure) => sum + pick(figure), 0) / Math.max(1, figures.length);
      return `${average((figure) => figure.nodeCores).toFixed(2)} / ${average((figure) => figure.otherCores).toFixed(2)}`;
    };
    lines.push(`| cores used on average: imgvault nodes / everything else but the load generator (PostgreSQL, S3 engine, other work) | ${names.map(cores).join(" | ")} |`);
    process.stdout.write(
      [
        "",
        `Machine: ${availableParallelism()} cores (${cpus()[0]?.model ?? "unknown CPU"}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}. ` +
          `Server: ${settings.server === "dist" ? "node dist/cli/main.js serve" : "tsx src/cli/main.ts serve"}. ` +
          `Load: autocannon in this process, ${settings.connections} connections for GETs and ${settings.uploadConnections} for uploads ` +
          `(split evenly over the nodes), ${settings.warmup} s warm-up + ${settings.duration} s each.`,
        "embedded: SQLite + files; scale-out-N: PostgreSQL (127.0.0.1) + Ceph RGW S3 (127.0.0.1, one OSD) with N nodes. " +
          "Everything, the load generator included, shares this machine's cores.",
        "",
        lines.join("\n"),
        "",
      ].join("\n"),
    );
  } finally {
    killAllChildren();
    await Promise.allSettled(configs.map((config) => config.dispose()));
    await rm(work, { recursive: true, force: true });
  }
}

process.once("exit", killAllChildren);
await main();
