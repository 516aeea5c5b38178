import type { FastifyRequest, FastifyServerOptions } from "fastify";

/** Query parameters whose values are credentials or capabilities (a signed URL's `sig` can be replayed). */
const secretQueryParameters = new Set(["sig", "signature", "token", "access_token", "key", "api_key", "password"]);

/** Request headers worth a line in the log; anything else (cookies, keys) stays out. */
const loggedHeaders = ["user-agent", "content-type", "content-length", "x-forwarded-for", "referer"];

/**
 * Where a secret could still reach a log line despite the serializers: objects logged by hand,
 * error details, bodies. pino replaces these values before a line is written.
 */
export const redactedLogPaths = [
  "req.headers.authorization",
  "req.headers.cookie",
  'req.headers["x-api-key"]',
  'res.headers["set-cookie"]',
  "password",
  "token",
  "key",
  "secret",
  "*.password",
  "*.newPassword",
  "*.token",
  "*.key",
  "*.secret",
  "*.secretAccessKey",
  "*.authorization",
  "*.*.password",
  "*.*.token",
  "*.*.authorization",
];

/** The URL with the values of credential-bearing query parameters replaced. */
export function redactUrl(url: string): string {
  const query = url.indexOf("?");
  if (query < 0) return url;
  const params = url
    .slice(query + 1)
    .split("&")
    .map((pair) => {
      const equals = pair.indexOf("=");
      const name = decodeSafely(equals < 0 ? pair : pair.slice(0, equals)).toLowerCase();
      return secretQueryParameters.has(name) ? `${pair.slice(0, equals < 0 ? pair.length : equals)}=[redacted]` : pair;
    });
  return `${url.slice(0, query)}?${params.join("&")}`;
}

function decodeSafely(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** What a request log line says about the request: never a key, a password or a signature. */
export function serializeRequest(request: FastifyRequest): Record<string, unknown> {
  const headers: Record<string, unknown> = {};
  for (const name of loggedHeaders) {
    const value = request.headers[name];
    if (value !== undefined) headers[name] = value;
  }
  // Whether a credential came helps explain a 401; the credential itself never appears.
  if (request.headers.authorization !== undefined) headers.authorization = "[redacted]";
  return {
    method: request.method,
    url: redactUrl(request.url),
    host: request.host,
    remoteAddress: request.ip,
    remotePort: request.socket?.remotePort,
    headers,
  };
}

/**
 * The logger options of the app: JSON lines (pino) at the configured level, with request lines
 * serialised by `serializeRequest` and secrets redacted wherever else they might appear. Options
 * given by the caller (tests pass a `stream`) are kept; `false` stays silent.
 */
export function loggerOptions(level: string, given: FastifyServerOptions["logger"]): FastifyServerOptions["logger"] {
  if (given === false) return false;
  const base = typeof given === "object" && given !== null ? given : {};
  const givenRedact = (base as { redact?: unknown }).redact;
  const extraPaths = Array.isArray(givenRedact) ? (givenRedact as string[]) : [];
  return {
    level,
    ...base,
    serializers: { req: serializeRequest as (request: unknown) => unknown, ...base.serializers },
    redact: { paths: [...redactedLogPaths, ...extraPaths], censor: "[redacted]" },
  } as FastifyServerOptions["logger"];
}
