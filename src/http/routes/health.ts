import type {} from "@fastify/swagger";
import type { FastifyInstance } from "fastify";
import { sql } from "kysely";
import type { Services } from "../../services/index.js";

/** A readiness check that does not answer within this long counts as failed: a hung backend is not ready. */
const checkTimeoutMs = 2000;

type CheckOutcome = "ok" | "failed" | "timeout";

async function within(check: () => Promise<unknown>): Promise<CheckOutcome> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<CheckOutcome>((resolve) => {
    timer = setTimeout(() => resolve("timeout"), checkTimeoutMs);
  });
  try {
    return await Promise.race([check().then((): CheckOutcome => "ok", (): CheckOutcome => "failed"), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const checksSchema = {
  type: "object",
  properties: {
    database: { type: "string", enum: ["ok", "failed", "timeout"] },
    storage: { type: "string", enum: ["ok", "failed", "timeout"] },
  },
} as const;

/**
 * Liveness (`/healthz`: the process answers) and readiness (`/readyz`: the database answers a
 * query and the blob store answers its check, so this node can serve; 503 otherwise, for a load
 * balancer to route around it). Neither needs a key; neither reveals more than ok/failed.
 */
export async function healthRoutes(app: FastifyInstance, { services }: { services: Services }): Promise<void> {
  app.get("/healthz", {
    schema: {
      summary: "Liveness: the process is up",
      tags: ["operations"],
      response: { 200: { type: "object", properties: { status: { type: "string", const: "ok" } } } },
    },
    handler: async () => ({ status: "ok" }),
  });

  app.get("/readyz", {
    schema: {
      summary: "Readiness: the database and the blob store answer",
      description: "200 when both answer within 2 s; 503 `service_unavailable` with Retry-After and which one failed otherwise.",
      tags: ["operations"],
      response: {
        200: { type: "object", properties: { status: { type: "string", const: "ready" }, checks: checksSchema } },
        503: {
          type: "object",
          properties: {
            error: { type: "object", properties: { code: { type: "string" }, message: { type: "string" } } },
            checks: checksSchema,
          },
        },
      },
    },
    handler: async (_request, reply) => {
      const [database, storage] = await Promise.all([
        within(() => sql`select 1`.execute(services.database.db)),
        within(() => services.blobs.check()),
      ]);
      const checks = { database, storage };
      reply.header("cache-control", "no-store");
      if (database === "ok" && storage === "ok") return { status: "ready", checks };
      const failing = [database === "ok" ? undefined : "the database", storage === "ok" ? undefined : "image storage"].filter(Boolean);
      return reply
        .code(503)
        .header("retry-after", "5")
        .send({ error: { code: "service_unavailable", message: `Not ready: ${failing.join(" and ")} did not answer.` }, checks });
    },
  });
}
