// Shared set-up for the browser tests: a real imgvault listening on an ephemeral port over a
// temporary data directory, and Debian's Chromium driven by playwright-core with a fresh profile.
import { access, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import type { FastifyInstance } from "fastify";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import sharp from "sharp";
import { webDist, webSourcesDigest, type BuildInfo } from "../../scripts/build-web.js";
import { buildApp } from "../../src/app.js";
import { loadConfig } from "../../src/config.js";

export const chromiumPath = "/usr/bin/chromium";
export const chromiumArgs = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];
export const outputDir = join(import.meta.dirname, "..", "..", "test-output");
export const password = "correct horse battery staple";

export interface E2eServer {
  app: FastifyInstance;
  baseUrl: string;
  dataDir: string;
  /** Creates the user (if new) and returns a fresh read-write key for them. */
  keyFor(username: string): Promise<string>;
  /** The API as seen by curl: same server, key in the header. */
  request(path: string, init?: RequestInit & { key?: string }): Promise<Response>;
}

/**
 * The built page must match web/ as it is now. Test files run in parallel processes, so they do
 * not rebuild it themselves (they would race on web/dist): they ask for `npm run build:web`.
 */
export async function assertWebBuilt(): Promise<BuildInfo> {
  let info: BuildInfo;
  try {
    info = JSON.parse(await readFile(join(webDist, "build-info.json"), "utf8")) as BuildInfo;
  } catch {
    throw new Error("web/dist is not built: run `npm run build:web` (npm ci does it through prepare)");
  }
  if (info.sourcesDigest !== (await webSourcesDigest())) {
    throw new Error("web/dist is older than the sources in web/: run `npm run build:web`");
  }
  return info;
}

/** Browsers still open; a server's teardown closes them first, so no connection of theirs holds it open. */
const openContexts = new Set<BrowserContext>();

export async function startServer(t: TestContext, env: Record<string, string> = {}): Promise<E2eServer> {
  await assertWebBuilt();
  const dataDir = await mkdtemp(join(tmpdir(), "imgvault-e2e-"));
  const config = loadConfig({ IMGVAULT_DATA_DIR: dataDir, IMGVAULT_GC_GRACE_SECONDS: "0", ...env });
  const app = await buildApp(config, { logger: false });
  t.after(async () => {
    await Promise.all([...openContexts].map((context) => context.close()));
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  await app.listen({ port: 0, host: "127.0.0.1" });
  const address = app.server.address();
  if (address === null || typeof address === "string") throw new Error("the server is not listening on TCP");
  const baseUrl = `http://127.0.0.1:${address.port}`;
  return {
    app,
    baseUrl,
    dataDir,
    async keyFor(username) {
      const { user } = await app.services.accounts.ensureUser(username, password);
      return (await app.services.accounts.issueKey(user.id)).key;
    },
    async request(path, init = {}) {
      const { key, ...rest } = init;
      const headers = new Headers(rest.headers);
      if (key) headers.set("authorization", `Token ${key}`);
      return fetch(baseUrl + path, { ...rest, headers });
    },
  };
}

export interface BrowserOptions {
  viewport?: { width: number; height: number };
  /** IANA time zone of the browser; by default the machine's. */
  timezoneId?: string;
}

/** Chromium with a profile of its own, closed and removed when the test ends. */
export async function launchBrowser(t: TestContext, options: BrowserOptions = {}): Promise<BrowserContext> {
  try {
    await access(chromiumPath);
  } catch {
    throw new Error(`${chromiumPath} is missing: run scripts/install-chromium.sh`);
  }
  const userDataDir = await mkdtemp(join(tmpdir(), "imgvault-chromium-"));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: chromiumPath,
    headless: true,
    args: chromiumArgs,
    viewport: options.viewport ?? { width: 1280, height: 900 },
    // Dates and numbers as the assertions spell them, whatever the machine's language.
    locale: "en-US",
    ...(options.timezoneId ? { timezoneId: options.timezoneId } : {}),
    acceptDownloads: true,
  });
  openContexts.add(context);
  context.on("close", () => openContexts.delete(context));
  t.after(async () => {
    await context.close();
    await rm(userDataDir, { recursive: true, force: true });
  });
  return context;
}

/**
 * Records what should never happen on the page: uncaught errors, and console errors such as CSP
 * or Trusted Types violations. Failed HTTP responses are expected (refused uploads, conflicts)
 * and are left out.
 */
export function watchForProblems(page: Page): string[] {
  const problems: string[] = [];
  page.on("pageerror", (error) => problems.push(`page error: ${error.message}`));
  page.on("console", (message) => {
    if (message.type() !== "error") return;
    if (/^Failed to load resource: the server responded with a status of (4\d\d)/.test(message.text())) return;
    problems.push(`console error: ${message.text()}`);
  });
  return problems;
}

export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(outputDir, { recursive: true });
  const path = join(outputDir, name);
  await page.screenshot({ path, fullPage: false });
  return path;
}

/** A real picture: an SVG scene rendered by sharp and encoded in the given format. */
export async function picture(
  format: "jpeg" | "png" | "webp",
  width: number,
  height: number,
  colours: [string, string, string],
): Promise<Buffer> {
  const [sky, ground, sun] = colours;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}">
    <defs><linearGradient id="g" x1="0" y1="0" x2="0" y2="1"><stop offset="0" stop-color="${sky}"/><stop offset="1" stop-color="#ffffff"/></linearGradient></defs>
    <rect width="100%" height="100%" fill="url(#g)"/>
    <circle cx="${width * 0.7}" cy="${height * 0.3}" r="${Math.min(width, height) * 0.15}" fill="${sun}"/>
    <path d="M0 ${height * 0.75} Q ${width * 0.25} ${height * 0.55} ${width * 0.5} ${height * 0.72} T ${width} ${height * 0.65} V ${height} H 0 Z" fill="${ground}"/>
  </svg>`;
  return sharp(Buffer.from(svg)).toFormat(format).toBuffer();
}
