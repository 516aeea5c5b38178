/**
 * The speed benchmark of issue 2: `npm run bench`. Starts the real server (the built JS, as
 * production runs it) on a temporary data directory, and measures with autocannon requests per
 * second and p99 latency of image GETs (cold: streamed from disk; hot: from the in-memory cache),
 * list pages at the start and far into 10,000 images, and uploads of a 1 MB JPEG. Each GET is set
 * beside a bare `node:http` server streaming the same bytes from disk (the floor); each upload
 * beside sharp decoding the same JPEG on every core (the ceiling). Prints one markdown table.
 *
 * Settings (environment): BENCH_DURATION seconds per measurement (10), BENCH_WARMUP seconds of
 * unmeasured load before each (2), BENCH_CONNECTIONS for GETs (10), BENCH_UPLOAD_CONNECTIONS (8),
 * BENCH_IMAGES rows to list (10000), BENCH_ONLY a comma list of png,jpeg,list,post,ceiling,
 * BENCH_SERVER=dist|tsx (dist), BENCH_LOG_LEVEL passed to the server as LOG_LEVEL (unset: the
 * server's default), BENCH_PROFILE=DIR to write the server's V8 CPU profiles there, BENCH_KEEP=1 to
 * keep the data directory, BENCH_QUIET_CORES / BENCH_QUIET_WAIT: before each measurement wait up to
 * that many seconds (120) for other processes to use less than that many cores (0.25),
 * BENCH_AUTOCANNON_BODIES=1 to let autocannon collect response bodies as it does by default.
 */
import type { ChildProcess } from "node:child_process";
import { closeSync, createWriteStream, openSync } from "node:fs";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, cpus, tmpdir, totalmem } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import autocannon from "autocannon";
import { killAllChildren, spawnTracked, stopChild, waitForLine } from "./children.js";
import { cpuBetween, sampleCpu, type CpuUse } from "./cpu.js";
import { photoJpeg, smallPng } from "./fixtures.js";
import { ensureBuilt } from "./build.js";
import { seedImages } from "./seed.js";

const root = fileURLToPath(new URL("..", import.meta.url));

// autocannon appends every response body to a string (for its optional body checks, unused here):
// decoding 1 MB of JPEG as UTF-8 per response capped it at ~60 req/s on this machine, measuring the
// load generator instead of the server. Dropping the bodies lifts that cap (~5× for the JPEG).
// BENCH_AUTOCANNON_BODIES=1 keeps autocannon's own behaviour, to compare with figures taken with it.
if (process.env.BENCH_AUTOCANNON_BODIES !== "1") {
  const requestsQueue = createRequire(import.meta.url)("autocannon/lib/pipelinedRequestsQueue.js") as { prototype: { addBody(data: unknown): void } };
  requestsQueue.prototype.addBody = () => {};
}

const settings = {
  duration: positiveNumber("BENCH_DURATION", 10),
  warmup: positiveNumber("BENCH_WARMUP", 2, true),
  connections: positiveNumber("BENCH_CONNECTIONS", 10),
  uploadConnections: positiveNumber("BENCH_UPLOAD_CONNECTIONS", 8),
  images: positiveNumber("BENCH_IMAGES", 10_000),
  only: new Set((process.env.BENCH_ONLY ?? "png,jpeg,list,post,ceiling").split(",").map((part) => part.trim())),
  server: process.env.BENCH_SERVER === "tsx" ? ("tsx" as const) : ("dist" as const),
  logLevel: process.env.BENCH_LOG_LEVEL,
  profileDir: process.env.BENCH_PROFILE,
  keep: process.env.BENCH_KEEP === "1",
  quietCores: positiveNumber("BENCH_QUIET_CORES", 0.25, true),
  quietWait: positiveNumber("BENCH_QUIET_WAIT", 120, true),
};

function positiveNumber(name: string, fallback: number, zeroAllowed = false): number {
  const raw = process.env[name];
  if (raw === undefined || raw === "") return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value < 0 || (value === 0 && !zeroAllowed)) throw new Error(`${name} must be a positive number, got "${raw}"`);
  return value;
}

function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

// ---------------------------------------------------------------------------------------------
// The server under test and its command line



function cliCommand(): { command: string; args: string[] } {
  return settings.server === "dist"
    ? { command: process.execPath, args: [join(root, "dist/cli/main.js")] }
    : { command: process.execPath, args: ["--import", "tsx", join(root, "src/cli/main.ts")] };
}

/** The environment without any imgvault setting of the caller's shell: the benchmark runs defaults. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [name, value] of Object.entries(process.env)) {
    if (/^(IMGVAULT_|S3_|DATABASE_|STORAGE$|LOG_LEVEL$)/.test(name)) continue;
    env[name] = value;
  }
  return { ...env, ...extra };
}

async function getAccessKey(dataDir: string): Promise<string> {
  const { command, args } = cliCommand();
  const child = spawnTracked(command, [...args, "get-access-key", "--username", "bench", "--password-stdin", "--data-dir", dataDir], {
    cwd: root,
    env: cleanEnv({}),
    stdio: ["pipe", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout?.on("data", (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr?.on("data", (chunk: Buffer) => (stderr += chunk.toString()));
  child.stdin?.end("bench-password-123\n");
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  const key = stdout.trim().split("\n").at(-1) ?? "";
  if (code !== 0 || !key) throw new Error(`get-access-key failed (${code}):\n${stderr}`);
  return key;
}

interface RunningServer {
  child: ChildProcess;
  url: string;
}

async function startServer(name: string, dataDir: string, logDir: string, env: Record<string, string>): Promise<RunningServer> {
  const { command, args } = cliCommand();
  const nodeArgs = settings.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${settings.profileDir}`, `--cpu-prof-name=${name}.cpuprofile`] : [];
  // The server logs straight into a file: piping its log through this process would bill the
  // load generator for the server's logging.
  const logFile = join(logDir, `${name}.log`);
  const logFd = openSync(logFile, "a");
  const child = spawnTracked(
    command,
    [...nodeArgs, ...args, "serve", "--host", "127.0.0.1", "--port", "0", "--data-dir", dataDir],
    { cwd: root, env: cleanEnv({ ...env, ...(settings.logLevel ? { LOG_LEVEL: settings.logLevel } : {}) }), stdio: ["ignore", logFd, "pipe"] },
  );
  closeSync(logFd);
  const log = createWriteStream(logFile, { flags: "a" });
  child.stderr?.on("data", (chunk: Buffer) => log.write(chunk));
  const url = await waitForLine(child, child.stderr!, /imgvault listening on (\S+)/, `server ${name}`);
  return { child, url };
}

async function startFloor(routes: Record<string, { file: string; type: string }>): Promise<RunningServer> {
  const child = spawnTracked(process.execPath, ["--import", "tsx", join(root, "bench/floor-server.ts"), JSON.stringify(routes)], {
    cwd: root,
    stdio: ["ignore", "pipe", "inherit"],
  });
  const port = await waitForLine(child, child.stdout!, /"port":(\d+)/, "floor server");
  return { child, url: `http://127.0.0.1:${port}` };
}

// ---------------------------------------------------------------------------------------------
// Fixtures over HTTP

/** Multipart body of one file field `image`. */
function multipartBody(fileName: string, type: string, bytes: Buffer, boundary: string): Buffer {
  return Buffer.concat([
    Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="image"; filename="${fileName}"\r\nContent-Type: ${type}\r\n\r\n`),
    bytes,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
}

async function upload(server: RunningServer, key: string, fileName: string, type: string, bytes: Buffer): Promise<string> {
  const boundary = "----imgvault-bench-boundary";
  const response = await fetch(`${server.url}/image/`, {
    method: "POST",
    headers: { authorization: `Token ${key}`, "content-type": `multipart/form-data; boundary=${boundary}` },
    body: new Uint8Array(multipartBody(fileName, type, bytes, boundary)),
  });
  const body = (await response.json()) as { name?: string };
  if (response.status !== 201 || !body.name) throw new Error(`upload of ${fileName} answered ${response.status}: ${JSON.stringify(body)}`);
  return body.name;
}

async function expectBytes(url: string, headers: Record<string, string>, expected: Buffer): Promise<void> {
  const response = await fetch(url, { headers });
  const bytes = Buffer.from(await response.arrayBuffer());
  if (response.status !== 200 || !bytes.equals(expected)) throw new Error(`GET ${url} answered ${response.status} with ${bytes.length} other bytes`);
}

/** Fetches the first page of the list, and follows `Link: rel="next"` until `pages` deep. */
async function listPages(server: RunningServer, key: string, pages: number): Promise<{ first: Buffer; latePath: string; late: Buffer; lateIndex: number }> {
  const headers = { authorization: `Token ${key}` };
  let url = `${server.url}/image/`;
  let first: Buffer | undefined;
  for (let page = 1; ; page += 1) {
    const response = await fetch(url, { headers });
    const body = Buffer.from(await response.arrayBuffer());
    if (response.status !== 200) throw new Error(`GET ${url} answered ${response.status}: ${body.toString()}`);
    first ??= body;
    const next = /<([^>]+)>;\s*rel="next"/.exec(response.headers.get("link") ?? "")?.[1];
    if (page === pages || !next) {
      const path = new URL(url).pathname + new URL(url).search;
      return { first, latePath: path, late: body, lateIndex: page };
    }
    url = next;
  }
}

/**
 * The upload body, different on every request: a unique file name, and a unique JPEG comment
 * segment so that every upload stores new bytes (hash, blob write, fsync) rather than finding them
 * already stored.
 */
function uploadBodies(jpeg: Buffer, boundary: string): () => Buffer {
  const digits = 16;
  const marker = "0".repeat(digits);
  const comment = Buffer.concat([Buffer.from([0xff, 0xfe, 0x00, digits + 2]), Buffer.from(marker)]);
  const unique = Buffer.concat([jpeg.subarray(0, 2), comment, jpeg.subarray(2)]);
  const template = multipartBody(`bench-${marker}.jpg`, "image/jpeg", unique, boundary);
  const nameAt = template.indexOf(marker);
  const commentAt = template.indexOf(marker, nameAt + digits);
  let counter = 0;
  return () => {
    counter += 1;
    const id = String(counter).padStart(digits, "0");
    const body = Buffer.from(template);
    body.write(id, nameAt, "latin1");
    body.write(id, commentAt, "latin1");
    return body;
  };
}

// ---------------------------------------------------------------------------------------------
// Measuring

interface Figure {
  rps: number;
  p99: number;
  /** Responses outside 2xx and connection errors: a figure with any is suspect. */
  failures: number;
  /** Cores used by the server (or decoders), the load generator and everything else while measuring. */
  cpu?: { server: number; load: number; other: number };
}

/** Microseconds of server CPU per request: unlike req/s, barely moved by other work on the machine. */
function cpuPerRequest(figure: Figure | undefined): number | undefined {
  return figure?.cpu && figure.rps > 0 ? (figure.cpu.server * 1e6) / figure.rps : undefined;
}

/**
 * Waits (up to BENCH_QUIET_WAIT seconds) until other processes use less than BENCH_QUIET_CORES
 * cores: on a shared machine a figure taken beside a compiler run measures the compiler.
 */
async function waitForQuiet(): Promise<void> {
  const deadline = Date.now() + settings.quietWait * 1000;
  let announced = false;
  for (;;) {
    const before = sampleCpu([]);
    await sleep(1000);
    const other = cpuBetween(before, sampleCpu([]))?.other ?? 0;
    if (other <= settings.quietCores) return;
    if (Date.now() >= deadline) {
      progress(`other processes still use ${other.toFixed(2)} cores; measuring anyway`);
      return;
    }
    if (!announced) progress(`other processes use ${other.toFixed(2)} cores; waiting for quiet`);
    announced = true;
  }
}

async function measure(label: string, target: RunningServer, options: autocannon.Options): Promise<Figure> {
  await waitForQuiet();
  if (settings.warmup > 0) await autocannon({ ...options, duration: settings.warmup });
  const pids = [target.child.pid ?? 0, process.pid];
  const before = sampleCpu(pids);
  const result = await autocannon({ ...options, duration: settings.duration });
  const use: CpuUse | undefined = cpuBetween(before, sampleCpu(pids));
  const cpu = use && { server: use.byPid.get(pids[0]!) ?? 0, load: use.byPid.get(process.pid) ?? 0, other: use.other };
  const failures = result.non2xx + result.errors;
  const figure: Figure = { rps: result.requests.average, p99: result.latency.p99, failures, cpu };
  progress(
    `${label}: ${Math.round(figure.rps)} req/s, p99 ${figure.p99} ms` +
      (cpu ? `, ${Math.round(cpuPerRequest(figure) ?? 0)} µs server CPU/req; cores: server ${cpu.server.toFixed(2)}, autocannon ${cpu.load.toFixed(2)}, other ${cpu.other.toFixed(2)}` : "") +
      (failures ? `, ${failures} FAILED` : ""),
  );
  return figure;
}

function get(url: string, headers: Record<string, string> = {}): autocannon.Options {
  return { url, headers, connections: settings.connections };
}

/**
 * Sharp decoding the JPEG in a loop, one process per core: `stats` as decodeFully proves an
 * upload, `raw` the bare decode. The figure's `server` CPU is the decoders' own.
 */
async function decodeCeiling(mode: "stats" | "raw", file: string): Promise<Figure> {
  await waitForQuiet();
  const processes = availableParallelism();
  const startAt = Date.now() + 4000;
  const durationMs = settings.duration * 1000;
  const workers = Array.from({ length: processes }, () =>
    spawnTracked(process.execPath, ["--import", "tsx", join(root, "bench/decode-worker.ts"), mode, file, String(startAt), String(durationMs)], {
      cwd: root,
      stdio: ["ignore", "pipe", "inherit"],
    }),
  );
  const pids = workers.map((child) => child.pid ?? 0);
  await sleep(Math.max(0, startAt - Date.now()));
  const before = sampleCpu(pids);
  const lines = await Promise.all(workers.map((child) => waitForLine(child, child.stdout!, /^(\{.*\})$/, "decode worker", durationMs + 60_000)));
  const use = cpuBetween(before, sampleCpu(pids));
  const reports = lines.map((line) => JSON.parse(line) as { decodes: number; elapsedMs: number; cpuMs: number });
  const rps = reports.reduce((sum, { decodes, elapsedMs }) => sum + decodes / (elapsedMs / 1000), 0);
  const decodes = reports.reduce((sum, report) => sum + report.decodes, 0);
  const cpuMs = reports.reduce((sum, report) => sum + report.cpuMs, 0);
  const cores = cpuMs / durationMs;
  const figure: Figure = { rps, p99: -1, failures: 0, cpu: { server: cores, load: 0, other: use?.other ?? 0 } };
  progress(
    `decode ceiling (${mode}): ${rps.toFixed(1)} decodes/s on ${processes} processes, ${(cpuMs / decodes).toFixed(1)} ms CPU/decode, other ${(use?.other ?? 0).toFixed(2)} cores`,
  );
  return figure;
}

// ---------------------------------------------------------------------------------------------
// The table

interface Row {
  measurement: string;
  figure: Figure | undefined;
  floor: Figure | undefined;
  /** How the figure compares with the floor by throughput, and by server CPU per request. */
  ratio: string;
  cpuRatio: string;
  target: string;
  met: boolean | undefined;
}

const formatRps = (value: number) => (value < 100 ? value.toFixed(1) : Math.round(value).toLocaleString("en-US"));
const formatMs = (value: number) => (value < 10 ? value.toFixed(1) : String(Math.round(value)));
const formatMicros = (value: number | undefined) => (value === undefined ? "–" : Math.round(value).toLocaleString("en-US"));

function compare(figure: Figure | undefined, floor: Figure | undefined, asPercent: boolean): { ratio: string; cpuRatio: string; value?: number } {
  if (!figure || !floor) return { ratio: "", cpuRatio: "" };
  const value = figure.rps / floor.rps;
  const ours = cpuPerRequest(figure);
  const theirs = cpuPerRequest(floor);
  const byCpu = ours && theirs ? theirs / ours : undefined;
  const show = (ratio: number) => (asPercent ? `${(ratio * 100).toFixed(0)}%` : `${ratio.toFixed(2)}×`);
  return { ratio: show(value), cpuRatio: byCpu === undefined ? "" : show(byCpu), value };
}

function gunRow(measurement: string, figure: Figure | undefined, floor: Figure | undefined, minimum: number | undefined): Row {
  const { ratio, cpuRatio, value } = compare(figure, floor, false);
  return {
    measurement,
    figure,
    floor,
    ratio,
    cpuRatio,
    target: minimum === undefined ? "" : `≥ ${minimum}× floor`,
    met: minimum === undefined || value === undefined ? undefined : value >= minimum,
  };
}

function table(rows: Row[]): string {
  const lines = [
    "| Measurement | req/s | p99 ms | CPU µs/req | floor req/s | floor p99 ms | floor CPU µs/req | vs floor | vs floor by CPU | Target | Met | other load (cores) |",
    "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|:-:|---:|",
  ];
  const failed = (figure: Figure | undefined) => (figure && figure.failures > 0 ? ` (${figure.failures} failed)` : "");
  const rps = (figure: Figure | undefined) => (figure ? formatRps(figure.rps) + failed(figure) : "–");
  const p99 = (figure: Figure | undefined) => (figure && figure.p99 >= 0 ? formatMs(figure.p99) : "–");
  const other = (figure: Figure | undefined) => (figure?.cpu ? figure.cpu.other.toFixed(2) : "");
  for (const row of rows) {
    const noise = [other(row.figure), other(row.floor)].filter(Boolean).join(" / ");
    lines.push(
      `| ${row.measurement} | ${rps(row.figure)} | ${p99(row.figure)} | ${formatMicros(cpuPerRequest(row.figure))} | ${rps(row.floor)} | ${p99(row.floor)} | ${formatMicros(
        cpuPerRequest(row.floor),
      )} | ${row.ratio} | ${row.cpuRatio} | ${row.target} | ${row.met === undefined ? "" : row.met ? "yes" : "**no**"} | ${noise} |`,
    );
  }
  return lines.join("\n");
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (settings.server === "dist") ensureBuilt(progress);
  const work = await mkdtemp(join(tmpdir(), "imgvault-bench-"));
  const cleanUp = async () => {
    killAllChildren();
    if (!settings.keep) await rm(work, { recursive: true, force: true });
  };
  process.once("SIGINT", () => {
    void cleanUp().finally(() => process.exit(130));
  });
  try {
    await runBenchmarks(work);
  } finally {
    await cleanUp();
    if (settings.keep) progress(`kept ${work}`);
  }
}

async function runBenchmarks(work: string): Promise<void> {
  const dataDir = join(work, "data");
  const files = join(work, "files");
  await mkdir(files, { recursive: true });
  if (settings.profileDir) await mkdir(settings.profileDir, { recursive: true });
  const only = settings.only;

  progress("generating fixtures");
  const png = await smallPng();
  const jpeg = await photoJpeg();
  const pngPath = join(files, "small.png");
  const jpegPath = join(files, "photo.jpg");
  await writeFile(pngPath, png);
  await writeFile(jpegPath, jpeg);

  progress("getting an access key through the CLI");
  const key = await getAccessKey(dataDir);
  const auth = { authorization: `Token ${key}` };
  progress(`seeding ${settings.images} images`);
  await seedImages({ dataDir, username: "bench", count: settings.images, file: pngPath });

  const figures = new Map<string, Figure>();
  const floorRoutes: Record<string, { file: string; type: string }> = {
    "/small.png": { file: pngPath, type: "image/png" },
    "/photo.jpg": { file: jpegPath, type: "image/jpeg" },
  };

  // Cold: no hot cache, every GET streams from disk like the floor.
  let server = await startServer("cold", dataDir, work, { IMGVAULT_HOT_CACHE_BYTES: "0" });
  progress(`cold server at ${server.url}; uploading fixtures`);
  const pngName = await upload(server, key, "small.png", "image/png", png);
  const jpegName = await upload(server, key, "photo.jpg", "image/jpeg", jpeg);
  await expectBytes(`${server.url}/image/${pngName}/`, auth, png);
  await expectBytes(`${server.url}/image/${jpegName}/`, auth, jpeg);
  const latePageNumber = Math.max(1, Math.floor((settings.images * 0.95) / 100));
  const pages = await listPages(server, key, latePageNumber);
  // The floor of a list page: the same JSON bytes, served as a file.
  await writeFile(join(files, "first.json"), pages.first);
  await writeFile(join(files, "late.json"), pages.late);
  floorRoutes["/first.json"] = { file: join(files, "first.json"), type: "application/json" };
  floorRoutes["/late.json"] = { file: join(files, "late.json"), type: "application/json" };
  const floor = await startFloor(floorRoutes);
  await expectBytes(`${floor.url}/small.png`, {}, png);

  for (const [kind, path, name] of [["png", "/small.png", pngName], ["jpeg", "/photo.jpg", jpegName]] as const) {
    if (!only.has(kind)) continue;
    figures.set(`floor ${kind}`, await measure(`floor ${kind}`, floor, get(floor.url + path)));
    figures.set(`cold ${kind}`, await measure(`cold ${kind}`, server, get(`${server.url}/image/${name}/`, auth)));
  }
  await stopChild(server.child);

  // Hot: the default configuration, with its in-memory cache of recently served bytes.
  server = await startServer("hot", dataDir, work, {});
  progress(`hot server at ${server.url}`);
  for (const [kind, name] of [["png", pngName], ["jpeg", jpegName]] as const) {
    if (!only.has(kind)) continue;
    figures.set(`hot ${kind}`, await measure(`hot ${kind}`, server, get(`${server.url}/image/${name}/`, auth)));
  }
  if (only.has("list")) {
    figures.set("floor first page", await measure("floor first page", floor, get(`${floor.url}/first.json`)));
    figures.set("first page", await measure("first page", server, get(`${server.url}/image/`, auth)));
    figures.set("floor late page", await measure("floor late page", floor, get(`${floor.url}/late.json`)));
    figures.set("late page", await measure("late page", server, get(server.url + pages.latePath, auth)));
  }
  if (only.has("post")) {
    const boundary = "----imgvault-bench-upload";
    const nextBody = uploadBodies(jpeg, boundary);
    figures.set(
      "post",
      await measure("post", server, {
        url: `${server.url}/image/`,
        connections: settings.uploadConnections,
        requests: [
          {
            method: "POST",
            path: "/image/",
            headers: { ...auth, "content-type": `multipart/form-data; boundary=${boundary}` },
            setupRequest: (request) => ({ ...request, body: nextBody() }),
          },
        ],
      }),
    );
  }
  await stopChild(server.child);
  await stopChild(floor.child);

  let statsCeiling: Figure | undefined;
  let rawCeiling: Figure | undefined;
  if (only.has("ceiling") || only.has("post")) {
    progress("measuring the decode ceilings");
    statsCeiling = await decodeCeiling("stats", jpegPath);
    rawCeiling = await decodeCeiling("raw", jpegPath);
  }

  const rows: Row[] = [];
  const kb = (bytes: number) => `${Math.round(bytes / 1024).toLocaleString("en-US")} KB`;
  for (const [kind, label] of [["png", `${kb(png.length)} PNG`], ["jpeg", `${kb(jpeg.length)} JPEG`]] as const) {
    if (!only.has(kind)) continue;
    rows.push(gunRow(`GET ${label}, cold (disk)`, figures.get(`cold ${kind}`), figures.get(`floor ${kind}`), 0.9));
    rows.push(gunRow(`GET ${label}, hot (memory)`, figures.get(`hot ${kind}`), figures.get(`floor ${kind}`), 3));
  }
  if (only.has("list")) {
    const first = figures.get("first page");
    const late = figures.get("late page");
    rows.push(gunRow(`GET /image/ (${settings.images.toLocaleString("en-US")} images), page 1`, first, figures.get("floor first page"), undefined));
    const lateRow = gunRow(`GET /image/, page ${pages.lateIndex} via cursor`, late, figures.get("floor late page"), undefined);
    if (first && late) {
      const versusFirst = late.rps / first.rps;
      const firstCpu = cpuPerRequest(first);
      const lateCpu = cpuPerRequest(late);
      lateRow.target = `≥ 0.9× page 1: ${versusFirst.toFixed(2)}×` + (firstCpu && lateCpu ? ` (by CPU ${(firstCpu / lateCpu).toFixed(2)}×)` : "");
      lateRow.met = versusFirst >= 0.9;
    }
    rows.push(lateRow);
  }
  if (only.has("post")) {
    const post = figures.get("post");
    for (const [ceiling, label] of [[statsCeiling, "stats() as decodeFully"], [rawCeiling, "bare decode"]] as const) {
      const { ratio, cpuRatio, value } = compare(post, ceiling, true);
      rows.push({
        measurement: `POST ${kb(jpeg.length)} JPEG vs ceiling: ${label}`,
        figure: post,
        floor: ceiling,
        ratio,
        cpuRatio,
        target: "≥ 85% of ceiling",
        met: value === undefined ? undefined : value >= 0.85,
      });
    }
  } else {
    for (const [ceiling, label] of [[statsCeiling, "stats() as decodeFully"], [rawCeiling, "bare decode"]] as const) {
      if (ceiling) rows.push({ measurement: `decode ceiling, ${label} (decodes/s)`, figure: ceiling, floor: undefined, ratio: "", cpuRatio: "", target: "", met: undefined });
    }
  }

  const cpu = cpus()[0]?.model ?? "unknown CPU";
  process.stdout.write(
    [
      "",
      `Machine: ${availableParallelism()} cores (${cpu}), ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}, ${process.platform}. ` +
        `Server: ${settings.server === "dist" ? "node dist/cli/main.js serve" : "tsx src/cli/main.ts serve"}, LOG_LEVEL ${settings.logLevel ?? "default"}.`,
      `Load: autocannon in this process, ${settings.connections} connections for GETs, ${settings.uploadConnections} for uploads, ` +
        `${settings.warmup} s warm-up + ${settings.duration} s per measurement. The load generator shares the cores with the server it loads.`,
      "",
      table(rows),
      "",
      "Floor: a bare node:http server streaming the same bytes from disk per request, no auth (list pages: the same JSON as a file). " +
        "Ceiling (POST rows): sharp decoding the same JPEG in one process per core, with stats() as decodeFully does, and bare (raw pixels).",
      "CPU µs/req: the server's own CPU time per request (for ceilings: per decode); 'by CPU' compares those, which other load on the machine barely moves. " +
        "Other load: cores used by processes outside the benchmark during the measurement / during its floor.",
      "",
    ].join("\n"),
  );
}

process.once("exit", killAllChildren);
await main();
