import type {} from "@fastify/swagger";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import { AppError } from "../../errors.js";
import { maxPageSize } from "../../services/images.js";
import type { Services } from "../../services/index.js";
import { authenticate, principalOf } from "../auth.js";
import { imageReadResponses, parseTransformQuery, serveImage, transformQuerySchema } from "../image-response.js";
import { readImageUpload } from "../multipart.js";
import { baseUrl, imagePath, presentImage } from "../presenters.js";
import { imageSecurityHeaders, stripQuerySchema, type StripQuery } from "../privacy.js";
import { allowOnly, errorResponses } from "../schemas.js";

interface NameParams {
  name: string;
}

/** The original API: POST/GET `/image/`, GET/PATCH/DELETE `/image/<name>/`. */
export async function imageRoutes(app: FastifyInstance, { services }: { services: Services }): Promise<void> {
  const { images, staging } = services;
  app.addHook("onRequest", authenticate(services.accounts));

  app.post<{ Querystring: StripQuery }>("/image/", {
    schema: {
      summary: "Store an image under its file name",
      description:
        "Multipart upload, file field `image`. The bytes are stored as sent. If you already have an image of that name, the new one is stored under the next free name (`cat-2.png`).",
      tags: ["images"],
      consumes: ["multipart/form-data"],
      querystring: stripQuerySchema,
      response: { 201: { $ref: "Image#" }, ...errorResponses(400, 401, 403, 413, 415, 422, 503, 507) },
    },
    handler: async (request, reply) => {
      const { userId } = principalOf(request);
      const upload = await readImageUpload(request, staging);
      if (!upload.staged) throw new AppError("missing_image_field");
      try {
        const row = await images.create(userId, upload.fileName ?? "", upload.staged, { strip: request.query.strip });
        return reply.code(201).header("location", imagePath(row.name)).send(presentImage(row, baseUrl(request)));
      } finally {
        await upload.staged.dispose();
      }
    },
  });

  app.get<{ Querystring: { limit?: number; cursor?: string } }>("/image/", {
    schema: {
      summary: "List your images, newest first",
      description: "Paginated: follow the `Link: <…>; rel=\"next\"` header. `X-Total-Count` gives the number of images.",
      tags: ["images"],
      querystring: {
        type: "object",
        properties: {
          limit: { type: "integer", minimum: 1, maximum: maxPageSize, default: 100 },
          cursor: { type: "string", maxLength: 200 },
        },
      },
      response: { 200: { type: "array", items: { $ref: "Image#" } }, ...errorResponses(400, 401) },
    },
    handler: async (request, reply) => {
      const { userId } = principalOf(request);
      const page = await images.list(userId, request.query);
      const base = baseUrl(request);
      reply.header("x-total-count", String(page.total));
      if (page.nextCursor) {
        const next = new URLSearchParams({ limit: String(request.query.limit ?? 100), cursor: page.nextCursor });
        reply.header("link", `<${base}/image/?${next.toString()}>; rel="next"`);
      }
      return page.images.map((row) => presentImage(row, base));
    },
  });

  // GET and HEAD declared together: Fastify's automatic HEAD would read the whole blob to discard it.
  app.route<{ Params: NameParams; Querystring: Record<string, unknown> }>({
    method: ["GET", "HEAD"],
    url: "/image/:name/",
    schema: {
      summary: "Render an image: its stored bytes, or a transformed variant",
      description:
        "Without transform parameters: the stored bytes. With `w`, `h`, `fit`, `enlarge`, `format`, `q` or `dpr`: a resized or converted variant, cached. " +
        "Strong ETag, Last-Modified, If-None-Match/If-Modified-Since (304), one byte Range (206, 416), `Cache-Control: private, no-cache`.",
      tags: ["images"],
      params: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
      querystring: transformQuerySchema,
      produces: ["image/*"],
      response: { ...imageReadResponses, ...errorResponses(400, 401, 404, 416, 503) },
    },
    handler: async (request, reply) => sendImage(request, reply),
  });

  async function sendImage(
    request: FastifyRequest<{ Params: NameParams; Querystring: Record<string, unknown> }>,
    reply: FastifyReply,
  ): Promise<FastifyReply> {
    const transform = parseTransformQuery(request);
    const { userId } = principalOf(request);
    return serveImage(request, reply, services, () => images.find(userId, request.params.name), transform, {
      // The bytes under a name can change: caches must ask again, and only the caller's own may keep them.
      cacheControl: "private, no-cache",
      securityHeaders: imageSecurityHeaders(services.config.imageHeaders),
    });
  }

  app.patch<{ Params: NameParams; Querystring: StripQuery }>("/image/:name/", {
    schema: {
      summary: "Replace an image's bytes and/or rename it",
      description:
        "Multipart: file field `image` replaces the bytes; text field `name` renames (409 if taken). The old bytes stay readable until the new ones are committed.",
      tags: ["images"],
      consumes: ["multipart/form-data"],
      params: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
      querystring: stripQuerySchema,
      response: { 200: { $ref: "Image#" }, ...errorResponses(400, 401, 403, 404, 409, 412, 413, 415, 422, 503, 507) },
    },
    handler: async (request) => {
      const { userId } = principalOf(request);
      const upload = await readImageUpload(request, staging);
      try {
        const newName = upload.fields.name;
        if (!upload.staged && newName === undefined) {
          throw new AppError("missing_image_field", "Send a file in the field \"image\", a new name in the field \"name\", or both.");
        }
        const row = await images.update(userId, request.params.name, {
          staged: upload.staged,
          newName,
          expectedSha256: ifMatch(request),
          strip: request.query.strip,
        });
        return presentImage(row, baseUrl(request));
      } finally {
        await upload.staged?.dispose();
      }
    },
  });

  app.delete<{ Params: NameParams }>("/image/:name/", {
    schema: {
      summary: "Delete an image",
      description: "Answers 200 with the deleted image object, as the original did.",
      tags: ["images"],
      params: { type: "object", properties: { name: { type: "string" } }, required: ["name"] },
      response: { 200: { $ref: "Image#" }, ...errorResponses(401, 403, 404, 412) },
    },
    handler: async (request) => {
      const { userId } = principalOf(request);
      const row = await images.delete(userId, request.params.name, ifMatch(request));
      return presentImage(row, baseUrl(request));
    },
  });

  allowOnly(app, "/image/", ["GET", "HEAD", "POST"]);
  allowOnly(app, "/image/:name/", ["GET", "HEAD", "PATCH", "DELETE"]);
}

/** The SHA-256 named by a strong `If-Match`, or undefined when absent or `*`. */
function ifMatch(request: FastifyRequest): string | undefined {
  const header = request.headers["if-match"];
  if (header === undefined || header.trim() === "*") return undefined;
  const match = /^\s*"([0-9a-f]{64})"\s*$/.exec(header);
  // An If-Match naming no version we could hold can never match: RFC 9110 says 412.
  return match?.[1] ?? "no-such-version";
}

export { contentDisposition } from "../image-response.js";
