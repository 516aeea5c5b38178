import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { TestContext } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildApp, type BuildOptions } from "../../src/app.js";
import { loadConfig, type Config } from "../../src/config.js";

export interface TestApp {
  app: FastifyInstance;
  config: Config;
  dataDir: string;
  /** Creates a user and returns a fresh read-write key for it. */
  userKey(username?: string): Promise<string>;
}

let userCounter = 0;

/**
 * An app on a fresh temporary data directory, closed and removed when the test ends
 * (the fastify/demo `build(t)` habit). `env` adds configuration as environment variables would.
 */
export async function buildTestApp(
  t: TestContext,
  env: Record<string, string> = {},
  options: BuildOptions = {},
): Promise<TestApp> {
  const dataDir = await mkdtemp(join(tmpdir(), "imgvault-test-"));
  const config = loadConfig({ IMGVAULT_DATA_DIR: dataDir, IMGVAULT_GC_GRACE_SECONDS: "0", ...env });
  const app = await buildApp(config, { logger: false, ...options });
  t.after(async () => {
    await app.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return {
    app,
    config,
    dataDir,
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
