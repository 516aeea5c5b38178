import type {} from "@fastify/swagger";
import type { FastifyInstance } from "fastify";

/** Liveness: the process answers. */
export async function healthRoutes(app: FastifyInstance): Promise<void> {
  app.get("/healthz", {
    schema: {
      summary: "Liveness: the process is up",
      tags: ["operations"],
      response: { 200: { type: "object", properties: { status: { type: "string", const: "ok" } } } },
    },
    handler: async () => ({ status: "ok" }),
  });
}
