import { Redis } from "ioredis";
import type { Config } from "../config.js";
import { AppError } from "../errors.js";

export type RedisClient = Redis;

/**
 * Connects to the Redis that nodes share (`REDIS_URL`). Every key the client touches gets
 * `keyPrefix`, so several deployments (or test runs) can share one Redis. Resolves once Redis
 * answers; rejects with `service_unavailable` when it does not, so a node does not start with
 * counters and keys of its own while its peers share theirs.
 *
 * While running, a command sent when Redis is gone fails after one reconnection attempt instead
 * of waiting in a queue: the request that needed it answers 503 and the client reconnects in the
 * background.
 */
export async function connectRedis(config: NonNullable<Config["redis"]>): Promise<RedisClient> {
  const client = new Redis(config.url, {
    keyPrefix: config.keyPrefix,
    lazyConnect: true,
    connectTimeout: 2_000,
    maxRetriesPerRequest: 1,
    // Commands carry their own failures to the requests that sent them; the event would only
    // repeat them (and, unhandled, ioredis prints each one).
  });
  client.on("error", () => {});
  try {
    await client.connect();
    await client.ping();
  } catch (error) {
    client.disconnect();
    throw new AppError("service_unavailable", `Redis at ${redactUrl(config.url)} does not answer: ${(error as Error).message}`, {
      headers: { "retry-after": "5" },
      cause: error,
    });
  }
  return client;
}

/** Closes the connection, waiting for replies to commands already sent. */
export async function closeRedis(client: RedisClient): Promise<void> {
  try {
    await client.quit();
  } catch {
    client.disconnect();
  }
}

function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = "***";
    return parsed.toString();
  } catch {
    return "(unparseable URL)";
  }
}
