import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildApp, type BuildOptions } from "../../src/app.js";
import { loadConfig, type Config } from "../../src/config.js";
import { createBlobStore } from "../../src/storage/index.js";
import { createScaleOutBackend, scaleOutRequested } from "./scale-out.js";

export interface TestApp {
  app: FastifyInstance;
  config: Config;
  dataDir: string;
  /** Creates a user and returns a fresh read-write key for it. */
  userKey(username?: string): Promise<string>;
  /**
   * The SHA-256 of every blob in the app's store (the filesystem or S3, whichever the test runs
   * on), sorted. Works after the app is closed too.
   */
  storedBlobs(): Promise<string[]>;
}

let userCounter = 0;

/**
 * An app on a fresh temporary data directory, closed and removed when the test ends
 * (the fastify/demo `build(t)` habit). `env` adds configuration as environment variables would.
 *
 * With `IMGVAULT_TEST_BACKEND=scale-out` in the test process's environment, the app runs in the
 * scale-out configuration instead: a fresh PostgreSQL database (dropped afterwards) and a unique
 * prefix in the S3 bucket of the S3_* settings (emptied afterwards); node-local things (staging,
 * variant cache) stay in the data directory. `env` may still override any of it.
 */
export async function buildTestApp(
  t: TestContext,
  env: Record<string, string> = {},
  options: BuildOptions = {},
): Promise<TestApp> {
  const dataDir = await mkdtemp(join(tmpdir(), "imgvault-test-"));
  const backend = scaleOutRequested() ? await createScaleOutBackend("routes") : undefined;
  let app: FastifyInstance;
  let config: Config;
  try {
    config = loadConfig({ IMGVAULT_DATA_DIR: dataDir, IMGVAULT_GC_GRACE_SECONDS: "0", ...backend?.env, ...env });
    app = await buildApp(config, { logger: false, ...options });
  } catch (error) {
    await backend?.dispose();
    await rm(dataDir, { recursive: true, force: true });
    throw error;
  }
  t.after(async () => {
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
    await backend?.dispose();
  });
  return {
    app,
    config,
    dataDir,
    async storedBlobs() {
      const store = createBlobStore(config.storage);
      try {
        const hashes: string[] = [];
        for await (const blob of store.list()) hashes.push(blob.sha256);
        return hashes.sort();
      } finally {
        await store.close();
      }
    },
    async userKey(username = `user${++userCounter}`) {
      const { user } = await app.services.accounts.ensureUser(username, "correct horse battery staple");
      return (await app.services.accounts.issueKey(user.id)).key;
    },
  };
}

export interface MultipartFile {
  field?: string;
  filename?: string;
  contentType?: string;
  bytes: Uint8Array;
}

/** A real multipart/form-data body as a browser or curl would send it. */
export async function multipart(
  files: MultipartFile[],
  fields: Record<string, string> = {},
): Promise<{ payload: Buffer; headers: Record<string, string> }> {
  const form = new FormData();
  for (const [name, value] of Object.entries(fields)) form.append(name, value);
  for (const file of files) {
    const blob = new Blob([new Uint8Array(file.bytes)], { type: file.contentType ?? "application/octet-stream" });
    form.append(file.field ?? "image", blob, file.filename ?? "image.bin");
  }
  const response = new Response(form);
  return {
    payload: Buffer.from(await response.arrayBuffer()),
    headers: { "content-type": response.headers.get("content-type") ?? "" },
  };
}

export function auth(key: string): Record<string, string> {
  return { authorization: `Token ${key}` };
}
