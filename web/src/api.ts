// The page's only way to the server: the public HTTP API, same origin, with the access key in the
// Authorization header (never in a URL).

/** Camera details the server extracts at upload, when it does. */
export interface ExifHighlights {
  make?: string | null;
  model?: string | null;
  lens?: string | null;
  taken_at?: string | null;
  orientation?: number | null;
}

/** The API's image object; `thumbhash` and `exif` are optional because older servers lack them. */
export interface ImageObject {
  name: string;
  url: string;
  content_type: string;
  format: string;
  width: number;
  height: number;
  pages: number;
  bytes: number;
  sha256: string;
  has_gps?: boolean;
  created_at: string;
  updated_at: string;
  thumbhash?: string | null;
  exif?: ExifHighlights | null;
}

export interface AccessKey {
  id: string;
  label: string;
  prefix: string;
  scope: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  revoked_at?: string | null;
}

export interface ImagePage {
  images: ImageObject[];
  /** Same-origin path of the next page, or null on the last one. */
  next: string | null;
  /** All of the caller's images, from X-Total-Count. */
  total: number | null;
}

export interface SignedLink {
  url: string;
  expires_at: string;
}

export interface NewKey {
  key: string;
  record: AccessKey | null;
}

/** Transform parameters of `GET /image/<name>/` (issue 4); servers without transforms ignore them. */
export interface TransformParams {
  w?: number;
  h?: number;
  fit?: "cover" | "contain" | "fill" | "inside" | "outside";
  format?: "jpeg" | "png" | "webp" | "avif" | "gif" | "auto";
}

/** A refusal from the API (its `{"error": {code, message}}` body) or a failure to reach it (status 0). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }

  /** The route itself does not exist: a feature this server does not have. */
  get isMissingEndpoint(): boolean {
    return (this.status === 404 && this.code === "not_found") || this.status === 405;
  }
}

async function errorFrom(response: Response): Promise<ApiError> {
  let code = `http_${response.status}`;
  let message = `The server answered ${response.status} ${response.statusText}.`.replace(" .", ".");
  try {
    const body = (await response.json()) as { error?: { code?: unknown; message?: unknown } };
    if (typeof body.error?.code === "string") code = body.error.code;
    if (typeof body.error?.message === "string") message = body.error.message;
  } catch {
    // Not JSON (a proxy's error page): keep the status line.
  }
  return new ApiError(response.status, code, message);
}

function unreachable(): ApiError {
  return new ApiError(0, "network_error", "Could not reach the server. Check your connection and try again.");
}

export function imagePath(name: string): string {
  return `/image/${encodeURIComponent(name)}/`;
}

/** The same-origin path and query of a URL the server sent, so a proxy's idea of the host cannot mislead us. */
function samePath(url: string): string {
  const parsed = new URL(url, window.location.origin);
  return parsed.pathname + parsed.search;
}

function nextLink(header: string | null): string | null {
  if (!header) return null;
  for (const part of header.split(",")) {
    const match = /<([^>]+)>\s*;\s*rel="?next"?/i.exec(part);
    if (match?.[1]) return samePath(match[1]);
  }
  return null;
}

/** `POST /api/token/`: a new access key for a username and password. */
export async function logIn(username: string, password: string): Promise<string> {
  let response: Response;
  try {
    response = await fetch("/api/token/", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ username, password }),
      credentials: "omit",
    });
  } catch {
    throw unreachable();
  }
  if (!response.ok) throw await errorFrom(response);
  const body = (await response.json()) as { token?: unknown };
  if (typeof body.token !== "string") throw new ApiError(500, "bad_response", "The server sent no token.");
  return body.token;
}

export interface Upload {
  promise: Promise<ImageObject>;
  abort(): void;
}

/** The API with the access key of the signed-in person (empty when nobody is). */
export class Api {
  constructor(public key = "") {}

  private async call(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    headers.set("authorization", `Token ${this.key}`);
    let response: Response;
    try {
      response = await fetch(path, { ...init, headers, credentials: "omit" });
    } catch (error) {
      if (error instanceof DOMException && error.name === "AbortError") throw error;
      throw unreachable();
    }
    if (!response.ok) throw await errorFrom(response);
    return response;
  }

  private async json<T>(path: string, init: RequestInit = {}): Promise<T> {
    return (await (await this.call(path, init)).json()) as T;
  }

  async listPage(path: string): Promise<ImagePage> {
    const response = await this.call(path);
    const images = (await response.json()) as ImageObject[];
    const totalHeader = response.headers.get("x-total-count");
    const total = totalHeader === null ? null : Number(totalHeader);
    return { images, next: nextLink(response.headers.get("link")), total: Number.isFinite(total) ? total : null };
  }

  /** The image's bytes, transformed when `params` are given and the server supports them. */
  async fetchImage(name: string, params: TransformParams = {}, signal?: AbortSignal): Promise<Blob> {
    const query = new URLSearchParams();
    for (const [key, value] of Object.entries(params)) if (value !== undefined) query.set(key, String(value));
    const search = query.toString() === "" ? "" : `?${query.toString()}`;
    // no-cache: revalidate with the server (ETag) so a replaced image never shows its old bytes.
    const response = await this.call(imagePath(name) + search, { cache: "no-cache", signal: signal ?? null });
    return response.blob();
  }

  upload(file: File, onProgress: (fraction: number) => void): Upload {
    const form = new FormData();
    form.append("image", file, file.name);
    return this.send("POST", "/image/", form, {}, onProgress);
  }

  /** Replaces the bytes, only if the image is still the version `sha256` (else 412 precondition_failed). */
  replace(name: string, file: File, sha256: string, onProgress: (fraction: number) => void): Upload {
    const form = new FormData();
    form.append("image", file, file.name);
    return this.send("PATCH", imagePath(name), form, { "if-match": `"${sha256}"` }, onProgress);
  }

  async rename(name: string, newName: string): Promise<ImageObject> {
    const form = new FormData();
    form.append("name", newName);
    return this.json<ImageObject>(imagePath(name), { method: "PATCH", body: form });
  }

  async remove(name: string, sha256: string): Promise<ImageObject> {
    return this.json<ImageObject>(imagePath(name), { method: "DELETE", headers: { "if-match": `"${sha256}"` } });
  }

  async signedLink(name: string, expiresIn: number): Promise<SignedLink> {
    const link = await this.json<SignedLink>(`${imagePath(name)}signed-url`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ expires_in: expiresIn }),
    });
    return { url: new URL(link.url, window.location.origin).href, expires_at: link.expires_at };
  }

  async listKeys(): Promise<AccessKey[]> {
    const body = await this.json<AccessKey[] | { keys: AccessKey[] }>("/api/keys/");
    return Array.isArray(body) ? body : body.keys;
  }

  async createKey(input: { label: string; scope: string; expires_in?: number }): Promise<NewKey> {
    const body = await this.json<Record<string, unknown>>("/api/keys/", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(input),
    });
    // `{"token": secret, "key": record}`, as `POST /api/token/rotate` answers too.
    const key = [body.token, body.key].find((value): value is string => typeof value === "string");
    if (!key) throw new ApiError(500, "bad_response", "The server did not return the new key.");
    const record = typeof body.key === "object" && body.key !== null ? (body.key as AccessKey) : null;
    return { key, record };
  }

  async revokeKey(id: string): Promise<void> {
    await this.call(`/api/keys/${encodeURIComponent(id)}/`, { method: "DELETE" });
  }

  /** A multipart request through XMLHttpRequest, because fetch cannot report upload progress. */
  private send(
    method: string,
    path: string,
    form: FormData,
    headers: Record<string, string>,
    onProgress: (fraction: number) => void,
  ): Upload {
    const request = new XMLHttpRequest();
    const promise = new Promise<ImageObject>((resolve, reject) => {
      request.open(method, path);
      request.setRequestHeader("authorization", `Token ${this.key}`);
      for (const [name, value] of Object.entries(headers)) request.setRequestHeader(name, value);
      request.upload.addEventListener("progress", (event) => {
        if (event.lengthComputable && event.total > 0) onProgress(event.loaded / event.total);
      });
      request.upload.addEventListener("load", () => onProgress(1));
      request.addEventListener("load", () => {
        const response = new Response(request.status === 204 ? null : request.responseText, {
          status: request.status,
          statusText: request.statusText,
        });
        if (response.ok) {
          response.json().then((body) => resolve(body as ImageObject), reject);
        } else {
          errorFrom(response).then(reject, reject);
        }
      });
      request.addEventListener("error", () => reject(unreachable()));
      request.addEventListener("abort", () => reject(new ApiError(0, "aborted", "The upload was cancelled.")));
      request.send(form);
    });
    return { promise, abort: () => request.abort() };
  }
}
