import type { FastifyInstance, FastifySchema } from "fastify";
import { AppError, errorCatalogue } from "../errors.js";

/**
 * The multipart body of POST/PATCH image routes, for the OpenAPI document only: those routes read
 * the parts as streams, so Fastify must not validate a body (see `documentMultipartBodies`).
 */
const multipartImageBody = {
  type: "object",
  properties: {
    image: { type: "string", format: "binary", description: "The image file." },
    name: { type: "string", description: "PATCH only: a new name." },
  },
} as const;

const statusDescriptions = new Map<number, string>();
for (const [code, entry] of Object.entries(errorCatalogue)) {
  const list = statusDescriptions.get(entry.status);
  statusDescriptions.set(entry.status, list ? `${list}, ${code}` : code);
}

/** Response schemas for error statuses, naming the catalogue codes each status can carry. */
export function errorResponses(...statuses: number[]): Record<number, { description: string; $ref: string }> {
  return Object.fromEntries(
    statuses.map((status) => [status, { description: `Error: ${statusDescriptions.get(status) ?? "error"}`, $ref: "ErrorBody#" }]),
  ) as Record<number, { description: string; $ref: string }>;
}

const allMethods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] as const;

/** Answers the methods a resource does not support with 405 and an `Allow` header. */
export function allowOnly(app: FastifyInstance, url: string, allowed: readonly string[]): void {
  const others = allMethods.filter((method) => !allowed.includes(method));
  app.route({
    method: others,
    url,
    schema: { hide: true },
    handler: async (_request, reply) => {
      reply.header("allow", allowed.join(", "));
      throw new AppError("method_not_allowed");
    },
  });
}

/**
 * A @fastify/swagger `transform` that documents the multipart body on routes that consume
 * multipart/form-data, which cannot carry a validated body schema.
 */
export function documentMultipartBodies<S extends FastifySchema>({ schema, url }: { schema: S; url: string }): { schema: S; url: string } {
  const consumes = (schema as { consumes?: string[] } | undefined)?.consumes;
  if (!consumes?.includes("multipart/form-data")) return { schema, url };
  return { schema: { ...schema, body: multipartImageBody }, url };
}
