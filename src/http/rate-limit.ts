import type { ServerOptions } from "node:http";
import rateLimit from "@fastify/rate-limit";
import type { FastifyInstance, FastifyReply, FastifyRequest, RouteOptions } from "fastify";
import type { Config } from "../config.js";
import { AppError } from "../errors.js";

/**
 * Abuse limits at the HTTP edge: slow clients (server timeouts), password guessing (login rate
 * limits) and one key hogging the upload path (concurrent uploads per key). docs/security.md
 * lists every limit with its default and its setting.
 */

type Hook = (request: FastifyRequest, reply: FastifyReply) => Promise<void>;

/**
 * Fastify/Node server options that cut slow clients off: headers and the whole request each have
 * a deadline (Node answers 408 and closes the socket), idle sockets are closed.
 */
export function serverTimeouts(timeouts: Config["timeouts"]): {
  connectionTimeout: number;
  keepAliveTimeout: number;
  requestTimeout: number;
  http: ServerOptions;
} {
  const deadlines = [timeouts.headersMs, timeouts.requestMs].filter((ms) => ms > 0);
  // Node checks the deadlines on a timer (30 s by default), so a short deadline needs a faster
  // check to mean anything; the check walks the open connections and costs little.
  const checkEveryMs = deadlines.length === 0 ? 30_000 : Math.max(100, Math.min(30_000, Math.floor(Math.min(...deadlines) / 4)));
  return {
    connectionTimeout: timeouts.idleMs,
    keepAliveTimeout: timeouts.keepAliveMs,
    requestTimeout: timeouts.requestMs,
    http: {
      headersTimeout: timeouts.headersMs,
      requestTimeout: timeouts.requestMs,
      connectionsCheckingInterval: checkEveryMs,
    },
  };
}

/** Settings of the login limits. */
export interface LoginRateLimitOptions {
  /** Attempts per client address per window; 0 turns this limit off. */
  perAddress: number;
  /** Attempts per username per window (whatever the address); 0 turns this limit off. */
  perUsername: number;
  windowMs: number;
  /**
   * Where the counters live. Undefined: in this process's memory (enough for one node). An
   * ioredis client shares them between nodes (@fastify/rate-limit's Redis store).
   */
  redis?: unknown;
}

/** The routes that exchange a password for a key: the ones worth guessing passwords on. */
const loginRoutes = new Set(["POST /api/token/"]);

/**
 * Rate-limits the password routes per client address (checked before the body is read) and per
 * username (checked once the body is parsed); beyond either limit the answer is 429
 * `too_many_requests` with `Retry-After`. Must be registered before the routes it guards.
 */
export async function registerLoginRateLimit(app: FastifyInstance, options: LoginRateLimitOptions): Promise<void> {
  if (options.perAddress === 0 && options.perUsername === 0) return;
  await app.register(rateLimit, {
    global: false,
    ...(options.redis === undefined ? {} : { redis: options.redis, nameSpace: "imgvault-login-" }),
  });
  const hooks: { onRequest: Hook[]; preHandler: Hook[] } = { onRequest: [], preHandler: [] };
  if (options.perAddress > 0) {
    // The default key is the client address (IPv6 grouped by /64, so one host cannot rotate through its prefix).
    const byAddress = app.createRateLimit({ max: options.perAddress, timeWindow: options.windowMs });
    hooks.onRequest.push(refuseWhenExceeded(byAddress, "from this address"));
  }
  if (options.perUsername > 0) {
    const byUsername = app.createRateLimit({
      max: options.perUsername,
      timeWindow: options.windowMs,
      keyGenerator: (request) => `user:${usernameOf(request) ?? ""}`,
      // A body without a username is refused anyway and says nothing about any account.
      allowList: (request) => usernameOf(request) === undefined,
    });
    hooks.preHandler.push(refuseWhenExceeded(byUsername, "for this username"));
  }
  app.addHook("onRoute", (route) => {
    if (!routeMatches(route, loginRoutes)) return;
    route.onRequest = [...asArray(route.onRequest), ...hooks.onRequest];
    route.preHandler = [...asArray(route.preHandler), ...hooks.preHandler];
  });
}

type Limiter = ReturnType<FastifyInstance["createRateLimit"]>;

function refuseWhenExceeded(limiter: Limiter, scope: string): Hook {
  return async (request) => {
    let result: Awaited<ReturnType<Limiter>>;
    try {
      result = await limiter(request);
    } catch (error) {
      // The shared counters (Redis) cannot be reached: refuse rather than let guesses through uncounted.
      throw new AppError("service_unavailable", "Login attempts cannot be counted right now; try again shortly.", {
        headers: { "retry-after": "5" },
        cause: error,
      });
    }
    if (result.isAllowed || !result.isExceeded) return;
    const seconds = Math.max(1, result.ttlInSeconds);
    throw new AppError("too_many_requests", `Too many login attempts ${scope}; try again in ${seconds} seconds.`, {
      headers: { "retry-after": String(seconds) },
    });
  };
}

/** The username of a login body, normalised so that look-alike spellings share one counter. */
function usernameOf(request: FastifyRequest): string | undefined {
  const body = request.body as { username?: unknown } | undefined;
  const username = body?.username;
  if (typeof username !== "string" || username === "") return undefined;
  return username.normalize("NFC").toLowerCase();
}

/** The routes that take an upload: a key may run only so many of them at once. */
const uploadRoutes = new Set(["POST /image/", "PATCH /image/:name/"]);

/**
 * Caps the uploads one access key may have in flight at once (per node): beyond the cap the
 * answer is 429 `too_many_requests` with `Retry-After`, before any byte of the body is read.
 * A slot is freed when the response ends or the client goes away. Must be registered before the
 * routes it guards; runs after authentication, which names the key.
 */
export function registerUploadConcurrencyCap(app: FastifyInstance, perKey: number): void {
  if (perKey === 0) return;
  const inFlight = new Map<string, number>();
  const claimSlot: Hook = async (request, reply) => {
    const keyId = request.principal?.keyId;
    if (keyId === undefined || !uploadRoutes.has(`${request.method} ${request.routeOptions.url ?? ""}`)) return;
    const running = inFlight.get(keyId) ?? 0;
    if (running >= perKey) {
      // The unread body must not keep the connection busy for the next request.
      reply.header("connection", "close");
      throw new AppError("too_many_requests", `This key already has ${perKey} uploads in progress; wait for one to finish.`, {
        headers: { "retry-after": "1" },
      });
    }
    inFlight.set(keyId, running + 1);
    // 'close' comes once however the exchange ends: answered, failed, or the client gone.
    reply.raw.once("close", () => {
      const left = (inFlight.get(keyId) ?? 1) - 1;
      if (left <= 0) inFlight.delete(keyId);
      else inFlight.set(keyId, left);
    });
  };
  app.addHook("onRoute", (route) => {
    if (routeMatches(route, uploadRoutes)) route.preHandler = [...asArray(route.preHandler), claimSlot];
  });
}

function routeMatches(route: RouteOptions, wanted: Set<string>): boolean {
  const methods = Array.isArray(route.method) ? route.method : [route.method];
  return methods.some((method) => wanted.has(`${method} ${route.url}`));
}

function asArray<T>(value: T | T[] | undefined): T[] {
  if (value === undefined) return [];
  return Array.isArray(value) ? value : [value];
}
