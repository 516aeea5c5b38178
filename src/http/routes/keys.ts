import type {} from "@fastify/swagger";
import type { FastifyInstance } from "fastify";
import type { KeyScope } from "../../db/schema.js";
import { AppError } from "../../errors.js";
import type { Services } from "../../services/index.js";
import { authenticate, principalOf } from "../auth.js";
import { presentKey } from "../presenters.js";
import { allowOnly, errorResponses } from "../schemas.js";

/** Longest lifetime a key may be given, so that a typo cannot mint a key for ever and a day. */
export const maxKeyLifetimeSeconds = 10 * 366 * 24 * 60 * 60;

const keyObjectSchema = {
  type: "object",
  required: ["id", "label", "prefix", "scope", "created_at", "last_used_at", "expires_at", "revoked_at"],
  properties: {
    id: { type: "string", description: "Public identifier; use it to revoke the key." },
    label: { type: "string" },
    prefix: { type: "string", description: "The first characters of the key, to tell keys apart. Never the secret." },
    scope: { type: "string", enum: ["read", "read-write"] },
    created_at: { type: "string", format: "date-time" },
    last_used_at: { type: ["string", "null"], format: "date-time", description: "Updated at most once a minute." },
    expires_at: { type: ["string", "null"], format: "date-time" },
    revoked_at: { type: ["string", "null"], format: "date-time" },
  },
} as const;

const issuedKeySchema = {
  type: "object",
  required: ["token", "key"],
  properties: {
    token: { type: "string", description: "The secret key. Shown this once; store it now." },
    key: keyObjectSchema,
  },
} as const;

interface NewKeyBody {
  label?: string;
  scope?: KeyScope;
  expires_in?: number;
  expires_at?: string;
}

/**
 * Key management for the caller: list, create, revoke, rotate. Every route authenticates with a
 * key; a `read` key is refused the writes (403) by the authentication hook.
 */
export async function keyRoutes(app: FastifyInstance, { services }: { services: Services }): Promise<void> {
  const { accounts, clock } = services;
  app.addHook("onRequest", authenticate(accounts));

  app.post("/api/token/rotate", {
    schema: {
      summary: "Rotate the calling key",
      description: "Revokes the key this request carries and returns a new one with the same label, scope and expiry.",
      tags: ["keys"],
      response: { 200: issuedKeySchema, ...errorResponses(401, 403) },
    },
    handler: async (request) => {
      const { key, row } = await accounts.rotateKey(principalOf(request));
      return { token: key, key: presentKey(row) };
    },
  });

  app.get("/api/keys/", {
    schema: {
      summary: "List your access keys",
      description: "Newest first, revoked and expired ones included. Never shows a secret.",
      tags: ["keys"],
      response: { 200: { type: "array", items: keyObjectSchema }, ...errorResponses(401) },
    },
    handler: async (request) => (await accounts.listKeys(principalOf(request).userId)).map(presentKey),
  });

  app.post<{ Body: NewKeyBody | undefined }>("/api/keys/", {
    schema: {
      summary: "Create an access key",
      description:
        "JSON `label`, `scope` (`read` or `read-write`, the default) and optionally `expires_in` (seconds) or `expires_at`. The secret is in the answer only.",
      tags: ["keys"],
      body: {
        type: "object",
        properties: {
          // Control characters would hide in terminals and logs.
          label: { type: "string", maxLength: 100, pattern: "^[^\\u0000-\\u001f\\u007f]*$" },
          scope: { type: "string", enum: ["read", "read-write"] },
          expires_in: { type: "integer", minimum: 1, maximum: maxKeyLifetimeSeconds },
          expires_at: { type: "string", format: "date-time" },
        },
      },
      response: { 201: issuedKeySchema, ...errorResponses(400, 401, 403) },
    },
    handler: async (request, reply) => {
      const { userId } = principalOf(request);
      const body = request.body ?? {};
      const { key, row } = await accounts.issueKey(userId, {
        label: body.label ?? "",
        scope: body.scope ?? "read-write",
        expiresAt: expiryOf(body, clock()),
      });
      return reply.code(201).header("location", `/api/keys/${encodeURIComponent(row.id)}/`).send({ token: key, key: presentKey(row) });
    },
  });

  app.delete<{ Params: { id: string } }>("/api/keys/:id/", {
    schema: {
      summary: "Revoke one of your access keys",
      description: "Answers 200 with the revoked key. Another user's key, or one already revoked, answers 404.",
      tags: ["keys"],
      params: { type: "object", properties: { id: { type: "string", maxLength: 64 } }, required: ["id"] },
      response: { 200: keyObjectSchema, ...errorResponses(401, 403, 404) },
    },
    handler: async (request) => presentKey(await accounts.revokeKey(principalOf(request).userId, request.params.id)),
  });

  allowOnly(app, "/api/token/rotate", ["POST"]);
  allowOnly(app, "/api/keys/", ["GET", "HEAD", "POST"]);
  allowOnly(app, "/api/keys/:id/", ["DELETE"]);
}

/** The expiry a new key asks for: none, a lifetime in seconds, or a moment in the future. */
function expiryOf(body: NewKeyBody, now: Date): Date | null {
  if (body.expires_in !== undefined && body.expires_at !== undefined) {
    throw new AppError("validation_failed", "Give expires_in or expires_at, not both.");
  }
  if (body.expires_in !== undefined) return new Date(now.getTime() + body.expires_in * 1000);
  if (body.expires_at === undefined) return null;
  const at = Date.parse(body.expires_at);
  if (!Number.isFinite(at) || at <= now.getTime()) throw new AppError("validation_failed", "expires_at must be a moment in the future.");
  if (at - now.getTime() > maxKeyLifetimeSeconds * 1000) throw new AppError("validation_failed", "expires_at is too far in the future.");
  return new Date(at);
}
