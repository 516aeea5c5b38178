import type { FastifyReply, FastifyRequest } from "fastify";
import { LRUCache } from "lru-cache";
import type { ImageRow } from "../db/schema.js";
import { isAppError } from "../errors.js";
import { parseTransformParams, type OutputFormat } from "../processing/transform-params.js";
import type { Services } from "../services/index.js";
import { splitExtension } from "../services/names.js";
import { parsedTransform, type ParsedTransform } from "../services/variants.js";
import { sendRepresentation } from "./serving.js";

export interface ImageResponseOptions {
  /** `private, no-cache` for key-authenticated reads; `public, max-age=…` for signed URLs. */
  cacheControl: string;
  /** Headers every response carrying image bytes has (Content-Security-Policy, CORP). */
  securityHeaders: Record<string, string>;
}

const fileExtensions: Record<OutputFormat, string> = { jpeg: "jpg", png: "png", webp: "webp", avif: "avif", gif: "gif" };

/** `inline; filename=…` with an ASCII fallback and the exact UTF-8 name (RFC 6266). */
export function contentDisposition(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]|["\\%]/g, "_");
  return `inline; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(name)}`;
}

/** The file name a saved variant should get: the image's name with the output format's extension. */
function variantFileName(name: string, format: OutputFormat): string {
  return `${splitExtension(name).stem}.${fileExtensions[format]}`;
}

/**
 * Transform parameters of image GETs, for the OpenAPI document; `parseTransformParams` validates
 * them (400 `invalid_parameter` naming the parameter), so all are plain strings here.
 */
export const transformQuerySchema = {
  type: "object",
  properties: {
    w: { type: "string", description: "Width of the box, 1..8192 CSS pixels (times dpr)." },
    h: { type: "string", description: "Height of the box, 1..8192 CSS pixels (times dpr)." },
    fit: { type: "string", description: "cover | contain | fill | inside (default) | outside." },
    enlarge: { type: "string", description: "1 to scale up images smaller than the box; by default they never are." },
    format: { type: "string", description: "jpeg | png | webp | avif | gif | auto (AVIF, then WebP, then the original's, from Accept)." },
    q: { type: "string", description: "Encoder quality 1..100 (JPEG, WebP, AVIF)." },
    dpr: { type: "string", description: "Device pixel ratio 1..4, at most two decimals." },
  },
} as const;

/** Success answers of image GETs, for the OpenAPI document. */
export const imageReadResponses = {
  200: { description: "The image bytes (or the variant), with Content-Type from the real format.", type: "string", format: "binary" },
  206: { description: "One byte range of them, with Content-Range.", type: "string", format: "binary" },
  304: { description: "Not modified: the copy named by If-None-Match or If-Modified-Since is current.", type: "null" },
} as const;

/** Valid transform queries seen lately, by their raw query string: pages ask for the same few again and again. */
const parsedQueries = new LRUCache<string, ParsedTransform>({ max: 1000 });

/**
 * The transform a GET asks for, from its query (`parseTransformParams`), remembered by the raw
 * query string; refusals are not remembered.
 * @throws AppError `invalid_parameter` naming the parameter.
 */
export function parseTransformQuery(request: FastifyRequest): ParsedTransform {
  const at = request.url.indexOf("?");
  const raw = at < 0 ? "" : request.url.slice(at + 1);
  const known = parsedQueries.get(raw);
  if (known) return known;
  const parsed = parsedTransform(Object.freeze(parseTransformParams(request.query as Record<string, unknown>)));
  parsedQueries.set(raw, parsed);
  return parsed;
}

/** Lookups a read retries: a replacement may commit and collect the bytes of the row just read. */
const maxLookups = 5;

/**
 * Answers a GET/HEAD of the image `find` returns: its stored bytes when `transform` asks for nothing
 * (strong ETag = the content hash; served from the hot cache or streamed, ranges read from the
 * store), otherwise the variant (its own strong ETag, Vary: Accept when negotiated), with
 * conditional and range requests either way.
 *
 * A replacement or delete may commit, and its collector remove the old bytes, between reading the
 * row and opening them; then the image is looked up again, so a reader gets the new version whole,
 * or 404 once the image is really gone, never a 404 for an image that exists.
 */
export async function serveImage(
  request: FastifyRequest,
  reply: FastifyReply,
  services: Services,
  find: () => Promise<ImageRow>,
  transform: ParsedTransform,
  options: ImageResponseOptions,
): Promise<FastifyReply> {
  for (let lookup = 1; ; lookup += 1) {
    const row = await find();
    try {
      // Nothing is set on the reply before the bytes are open, so a retry starts clean.
      return await serveRow(request, reply, services, row, transform, options);
    } catch (error) {
      if (!(isAppError(error) && error.code === "image_not_found") || lookup >= maxLookups) throw error;
    }
  }
}

function serveRow(
  request: FastifyRequest,
  reply: FastifyReply,
  services: Services,
  row: ImageRow,
  transform: ParsedTransform,
  options: ImageResponseOptions,
): Promise<FastifyReply> {
  const lastModified = new Date(row.updated_at);
  if (transform.canonical === "") {
    return sendRepresentation(request, reply, {
      etag: `"${row.sha256}"`,
      lastModified,
      cacheHeaders: { "cache-control": options.cacheControl },
      contentHeaders: { "content-type": row.content_type, "content-disposition": contentDisposition(row.name), ...options.securityHeaders },
      load: () =>
        Promise.resolve({
          size: row.bytes,
          open: async (range) => {
            const body = await services.images.openContent(row, range);
            return body.kind === "buffer" ? body.bytes : body.stream;
          },
        }),
    });
  }

  const plan = services.variants.plan(row, transform, request.headers.accept);
  return sendRepresentation(request, reply, {
    etag: `"${plan.key}"`,
    lastModified,
    cacheHeaders: { "cache-control": options.cacheControl, ...(plan.varyAccept ? { vary: "Accept" } : {}) },
    contentHeaders: {
      "content-type": plan.contentType,
      "content-disposition": contentDisposition(variantFileName(row.name, plan.format)),
      ...options.securityHeaders,
    },
    load: async () => {
      const data = await services.variants.produce(row, transform.spec, plan);
      return {
        size: data.length,
        open: (range) => Promise.resolve(range === undefined ? data : data.subarray(range.start, range.end + 1)),
      };
    },
  });
}
