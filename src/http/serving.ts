import type { Readable } from "node:stream";
import type { FastifyReply, FastifyRequest } from "fastify";
import { AppError } from "../errors.js";
import type { ByteRange } from "../storage/blob-store.js";

/**
 * HTTP semantics of a GET/HEAD that returns one representation (RFC 9110): validators (strong
 * ETag, Last-Modified), conditional requests (If-None-Match, If-Modified-Since → 304), and single
 * byte ranges (Range, If-Range → 206 or 416). Shared by key-authenticated and signed image routes,
 * for stored originals and transformed variants alike.
 */

/** What the route knows before it produces any byte. */
export interface RepresentationHead {
  /** A strong entity tag, with its quotes: `"…"`. */
  etag: string;
  lastModified: Date;
  /** Sent with every answer, 304 included (Cache-Control, Vary): caches update their entry from a 304. */
  cacheHeaders: Record<string, string>;
  /** Sent with the content (200, 206, HEAD): Content-Type, Content-Disposition, security headers. */
  contentHeaders: Record<string, string>;
  /**
   * Makes the representation available: cheap for stored bytes (size from the database row), the
   * transform itself for a variant. Called only when the answer carries content, never for a 304.
   */
  load(): Promise<LoadedRepresentation>;
}

export interface LoadedRepresentation {
  size: number;
  /** The bytes, whole or the inclusive `range` (which lies within the size). Not called for HEAD. */
  open(range?: ByteRange): Promise<Buffer | Readable>;
}

/** A Range header's meaning for a representation of `size` bytes. */
export type RangeDecision = { kind: "whole" } | { kind: "partial"; range: ByteRange } | { kind: "unsatisfiable" };

const rangeSpecPattern = /^[ \t]*(\d*)[ \t]*-[ \t]*(\d*)[ \t]*$/;

/**
 * Interprets a `Range` header (RFC 9110 §14.2). One satisfiable byte range → partial. Anything we
 * do not serve as a range is answered whole, as the RFC allows: no header, another unit, a
 * malformed or invalid range-spec (last before first), or several ranges (multipart/byteranges is
 * not worth its weight for images). Unsatisfiable: a first byte at or beyond the end, or an empty
 * suffix (`bytes=-0`).
 */
export function decideRange(header: string | undefined, size: number): RangeDecision {
  if (header === undefined) return { kind: "whole" };
  const match = /^[ \t]*bytes[ \t]*=(.*)$/i.exec(header);
  if (!match) return { kind: "whole" };
  const specs = (match[1] ?? "").split(",").filter((part) => part.trim() !== "");
  if (specs.length !== 1) return { kind: "whole" };
  const parts = rangeSpecPattern.exec(specs[0]!);
  if (!parts) return { kind: "whole" };
  const [, first = "", last = ""] = parts;
  if (first === "" && last === "") return { kind: "whole" };
  if (first === "") {
    const suffixLength = Number(last);
    if (suffixLength === 0 || size === 0) return { kind: "unsatisfiable" };
    return { kind: "partial", range: { start: Math.max(0, size - suffixLength), end: size - 1 } };
  }
  const start = Number(first);
  if (last !== "" && Number(last) < start) return { kind: "whole" };
  if (start >= size) return { kind: "unsatisfiable" };
  const end = last === "" ? size - 1 : Math.min(Number(last), size - 1);
  return { kind: "partial", range: { start, end } };
}

/** The entity tags of an If-None-Match or If-Match list; `*` stands for any. */
function entityTags(header: string): Array<{ weak: boolean; opaque: string } | "*"> {
  const tags: Array<{ weak: boolean; opaque: string } | "*"> = [];
  for (const match of header.matchAll(/(W\/)?"([^"]*)"|\*/g)) {
    tags.push(match[0] === "*" ? "*" : { weak: match[1] !== undefined, opaque: match[2] ?? "" });
  }
  return tags;
}

function opaqueOf(etag: string): string {
  return etag.replace(/^W\//, "").replace(/^"|"$/g, "");
}

/** Whole seconds: HTTP dates have no finer resolution, so comparisons must not see milliseconds. */
function seconds(date: Date): number {
  return Math.floor(date.getTime() / 1000);
}

/**
 * Whether a GET/HEAD may be answered 304 (RFC 9110 §13.2.2): If-None-Match by weak comparison
 * when present (`*` matches any current representation), otherwise If-Modified-Since when it is
 * a valid date no earlier than Last-Modified.
 */
export function isNotModified(request: FastifyRequest, etag: string, lastModified: Date): boolean {
  const ifNoneMatch = request.headers["if-none-match"];
  if (ifNoneMatch !== undefined) {
    const ours = opaqueOf(etag);
    return entityTags(ifNoneMatch).some((tag) => tag === "*" || tag.opaque === ours);
  }
  const ifModifiedSince = request.headers["if-modified-since"];
  if (ifModifiedSince === undefined) return false;
  const since = Date.parse(ifModifiedSince);
  return !Number.isNaN(since) && seconds(lastModified) <= Math.floor(since / 1000);
}

/**
 * Whether an If-Range precondition holds (RFC 9110 §13.1.5), so that Range applies: an entity tag
 * must match ours by strong comparison, a date must equal Last-Modified exactly.
 */
function ifRangeHolds(request: FastifyRequest, etag: string, lastModified: Date): boolean {
  const ifRange = request.headers["if-range"];
  if (ifRange === undefined) return true;
  const value = String(ifRange).trim();
  if (value.startsWith('"') || value.startsWith("W/")) return !value.startsWith("W/") && value === etag;
  const date = Date.parse(value);
  return !Number.isNaN(date) && Math.floor(date / 1000) === seconds(lastModified);
}

/**
 * Answers a GET or HEAD for one representation: 304 when the client's copy is current (before
 * anything is loaded), 206 for one satisfiable range of a GET, 416 for an unsatisfiable one, 200
 * otherwise. HEAD sends the headers a GET would (Content-Length included) without opening the bytes.
 *
 * @throws AppError `range_not_satisfiable` with `Content-Range: bytes *\/size`.
 */
export async function sendRepresentation(
  request: FastifyRequest,
  reply: FastifyReply,
  head: RepresentationHead,
): Promise<FastifyReply> {
  const validators = () =>
    reply.header("etag", head.etag).header("last-modified", head.lastModified.toUTCString()).headers(head.cacheHeaders);
  if (isNotModified(request, head.etag, head.lastModified)) return validators().code(304).send();

  // Nothing about caching is set before the content is ready: an error on the way (busy, too
  // large) must not leave a shared cache holding it for the representation's lifetime.
  const loaded = await head.load();
  if (request.method === "HEAD") {
    // Range is defined for GET only (RFC 9110 §14.2): a HEAD describes the whole representation.
    return validators()
      .headers(head.contentHeaders)
      .header("accept-ranges", "bytes")
      .header("content-length", String(loaded.size))
      .send();
  }
  const decision = ifRangeHolds(request, head.etag, head.lastModified)
    ? decideRange(request.headers.range, loaded.size)
    : ({ kind: "whole" } as const);
  if (decision.kind === "unsatisfiable") {
    throw new AppError("range_not_satisfiable", undefined, {
      headers: { "content-range": `bytes */${loaded.size}`, "accept-ranges": "bytes", "cache-control": "no-store" },
    });
  }
  const range = decision.kind === "partial" ? decision.range : undefined;
  // Opened before any content header is set, so a failure to open answers a clean error.
  const body = await loaded.open(range);
  validators().headers(head.contentHeaders).header("accept-ranges", "bytes");
  if (range === undefined) return reply.header("content-length", String(loaded.size)).send(body);
  return reply
    .code(206)
    .header("content-range", `bytes ${range.start}-${range.end}/${loaded.size}`)
    .header("content-length", String(range.end - range.start + 1))
    .send(body);
}
