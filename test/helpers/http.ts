import assert from "node:assert/strict";
import { readFile, readdir } from "node:fs/promises";
import { join } from "node:path";
import type { FastifyInstance, LightMyRequestResponse } from "fastify";
import { auth, multipart, type MultipartFile } from "./app.js";

/** Uploads a file from disk as multipart field `image` under `filename`. */
export async function upload(
  app: FastifyInstance,
  key: string,
  path: string,
  filename: string,
  options: { method?: "POST" | "PATCH"; url?: string; fields?: Record<string, string>; headers?: Record<string, string> } = {},
): Promise<LightMyRequestResponse> {
  return uploadBytes(app, key, { bytes: await readFile(path), filename }, options);
}

export async function uploadBytes(
  app: FastifyInstance,
  key: string,
  file: MultipartFile,
  options: { method?: "POST" | "PATCH"; url?: string; fields?: Record<string, string>; headers?: Record<string, string> } = {},
): Promise<LightMyRequestResponse> {
  const body = await multipart([file], options.fields);
  return app.inject({
    method: options.method ?? "POST",
    url: options.url ?? "/image/",
    headers: { ...auth(key), ...body.headers, ...options.headers },
    payload: body.payload,
  });
}

/** Asserts the response is the catalogue's error body with this status and code. */
export function assertError(response: LightMyRequestResponse, status: number, code: string): void {
  assert.equal(response.statusCode, status, `expected ${status} ${code}, got ${response.statusCode}: ${response.body}`);
  assert.match(String(response.headers["content-type"]), /^application\/json/);
  const body = response.json<{ error: { code: string; message: string } }>();
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, "string");
  assert.ok(body.error.message.length > 0);
}

/** Every regular file below `dir` (relative paths), for asserting that nothing was left behind. */
export async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true }).catch(() => []);
  return entries.filter((entry) => entry.isFile()).map((entry) => join(entry.parentPath, entry.name).slice(dir.length + 1));
}
