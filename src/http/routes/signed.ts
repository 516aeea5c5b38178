import type {} from "@fastify/swagger";
import type { FastifyInstance } from "fastify";
import { AppError } from "../../errors.js";
import { parseTransformParams, transformParameterNames } from "../../processing/transform-params.js";
import type { Services } from "../../services/index.js";
import { maxSignedUrlLifetimeSeconds } from "../../services/signing.js";
import { parsedTransform, type ParsedTransform } from "../../services/variants.js";
import { authenticate, principalOf } from "../auth.js";
import { imageReadResponses, parseTransformQuery, serveImage, transformQuerySchema } from "../image-response.js";
import { baseUrl } from "../presenters.js";
import { imageSecurityHeaders } from "../privacy.js";
import { allowOnly, errorResponses } from "../schemas.js";

/** Lifetime of a signed URL when the request names none. */
export const defaultSignedUrlLifetimeSeconds = 3600;
/** Hex digits of the content hash a pinned URL carries (`v`): 64 bits tell versions of one image apart. */
const contentVersionLength = 16;

type TransformFields = Partial<Record<(typeof transformParameterNames)[number], string>>;

interface SignedUrlBody extends TransformFields {
  expires_in?: number;
  pin?: boolean;
}

/**
 * The path a signed URL names: the owner's numeric id (not their username, which is also their
 * login name and has no business in public URLs) and the image name. Built from decoded values
 * on both sides, so any equivalent encoding of the same URL verifies.
 */
export function signedResource(ownerId: number | string, name: string): string {
  return `/s/${ownerId}/${encodeURIComponent(name.normalize("NFC"))}`;
}

const transformBodyProperties = Object.fromEntries(
  Object.entries(transformQuerySchema.properties).map(([name, schema]) => [name, { ...schema }]),
);

/**
 * Signed URLs, for `<img src>` and CDNs, which cannot send an Authorization header:
 * `POST /image/<name>/signed-url` (any key, `read` included: it changes nothing stored) and the
 * keyless `GET /s/<owner id>/<name>?<transform>&exp=…&kid=…[&v=…]&sig=…`.
 */
export async function signedUrlRoutes(app: FastifyInstance, { services }: { services: Services }): Promise<void> {
  const { images, signer } = services;

  app.post<{ Params: { name: string }; Body: SignedUrlBody }>("/image/:name/signed-url", {
    onRequest: authenticate(services.accounts, { readsOnly: true }),
    schema: {
      summary: "Make a URL that serves the image (or a variant) without a key until it expires",
      description:
        "JSON body: `expires_in` seconds (default 3600, at most 7 days), any transform parameter (`w`, `h`, `fit`, `enlarge`, `format`, `q`, `dpr`), " +
        "and `pin: true` to bind the URL to the image's current bytes: its responses are then `immutable`, and it answers 404 once the image is replaced.",
      tags: ["images"],
      params: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
      body: {
        type: "object",
        properties: {
          expires_in: { type: "integer", minimum: 1, maximum: maxSignedUrlLifetimeSeconds, default: defaultSignedUrlLifetimeSeconds },
          pin: { type: "boolean", default: false, description: "Bind the URL to the image's current bytes." },
          ...transformBodyProperties,
        },
      },
      response: {
        200: {
          type: "object",
          required: ["url", "expires_at"],
          properties: {
            url: { type: "string", description: "Absolute URL; GET it without any key." },
            expires_at: { type: "string", format: "date-time" },
          },
        },
        ...errorResponses(400, 401, 404),
      },
    },
    handler: async (request) => {
      const { userId } = principalOf(request);
      const body = request.body ?? {};
      const fields: Record<string, string> = {};
      for (const name of transformParameterNames) {
        const value = body[name];
        if (value !== undefined) fields[name] = value;
      }
      const transform = parsedTransform(parseTransformParams(fields));
      const row = await images.find(userId, request.params.name);
      // Refuse now what every GET of the URL would refuse (the output limit; `auto` is planned
      // for a client that accepts only the original's format).
      if (transform.canonical !== "") services.variants.plan(row, transform, undefined);
      const resource = signedResource(userId, row.name);
      const params = transform.canonical;
      const signed = signer.sign({
        resource,
        params,
        expiresInSeconds: body.expires_in ?? defaultSignedUrlLifetimeSeconds,
        contentVersion: body.pin ? row.sha256.slice(0, contentVersionLength) : undefined,
      });
      const query = params === "" ? signed.query : `${params}&${signed.query}`;
      return { url: `${baseUrl(request)}${resource}?${query}`, expires_at: signed.expiresAt.toISOString() };
    },
  });

  app.route<{ Params: { owner: string; name: string }; Querystring: Record<string, unknown> }>({
    method: ["GET", "HEAD"],
    url: "/s/:owner/:name",
    schema: {
      summary: "Render an image through a signed URL (no key)",
      description:
        "The URL from `POST /image/<name>/signed-url`, unchanged. Same caching, transform and range semantics as `GET /image/<name>/`, " +
        "with `Cache-Control: public, max-age=<seconds left>` (and `immutable` when the URL is pinned to the content). " +
        "A changed path, parameter or signature: 403 `signature_invalid`; past its expiry: 403 `signature_expired`; deleted (or, pinned, replaced) image: 404.",
      tags: ["images"],
      security: [],
      params: { type: "object", properties: { owner: { type: "string" }, name: { type: "string" } }, required: ["owner", "name"] },
      // No querystring schema: a repeated or malformed parameter is a tampered URL (403), which
      // the handler decides, not a validation error (400).
      produces: ["image/*"],
      response: { ...imageReadResponses, ...errorResponses(403, 404, 416, 503) },
    },
    handler: async (request, reply) => {
      const { owner, name } = request.params;
      let transform: ParsedTransform;
      try {
        transform = parseTransformQuery(request);
      } catch {
        // We never sign a parameter we would refuse: it was changed after signing.
        throw new AppError("signature_invalid");
      }
      const verified = signer.verify({
        resource: signedResource(owner, name),
        params: transform.canonical,
        query: request.query,
      });
      const find = async () => {
        const row = await images.find(Number(owner), name);
        if (verified.contentVersion !== undefined && !row.sha256.startsWith(verified.contentVersion)) {
          throw new AppError("image_not_found", "The image was replaced since this URL was signed.");
        }
        return row;
      };
      return serveImage(request, reply, services, find, transform, {
        cacheControl: `public, max-age=${verified.secondsLeft}${verified.contentVersion === undefined ? "" : ", immutable"}`,
        securityHeaders: imageSecurityHeaders(services.config.imageHeaders),
      });
    },
  });

  allowOnly(app, "/image/:name/signed-url", ["POST"]);
  allowOnly(app, "/s/:owner/:name", ["GET", "HEAD"]);
}
