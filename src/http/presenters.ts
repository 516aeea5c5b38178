import type { FastifyRequest } from "fastify";
import type { AccessKeyRow, ImageRow } from "../db/schema.js";
import type { ExifHighlights } from "../processing/metadata.js";
import { readMetadata } from "../services/image-metadata.js";

/** The image object of the API. `image_name` repeats `name` for clients of the original service. */
export interface ImageObject {
  name: string;
  image_name: string;
  url: string;
  content_type: string;
  format: string;
  width: number;
  height: number;
  pages: number;
  bytes: number;
  sha256: string;
  has_gps: boolean;
  /** ThumbHash (base64) of the image as shown; null for images stored before it was computed. */
  thumbhash: string | null;
  /** Camera highlights from EXIF; null when the file records none. */
  exif: ExifHighlights | null;
  created_at: string;
  updated_at: string;
}

const nullableString = { type: ["string", "null"] } as const;

export const imageObjectSchema = {
  $id: "Image",
  type: "object",
  required: ["name", "image_name", "url", "content_type", "format", "width", "height", "pages", "bytes", "sha256", "created_at", "updated_at"],
  properties: {
    name: { type: "string", description: "The image's name, unique per user." },
    image_name: { type: "string", description: "Same as name, for clients of the original service." },
    url: { type: "string", description: "Where to GET the image (with your access key)." },
    content_type: { type: "string", examples: ["image/png"] },
    format: { type: "string", enum: ["jpeg", "png", "gif", "webp", "avif", "heif", "tiff"] },
    width: { type: "integer" },
    height: { type: "integer", description: "Height of one frame or page." },
    pages: { type: "integer", description: "Frames of an animation or pages of a TIFF." },
    bytes: { type: "integer" },
    sha256: { type: "string", description: "SHA-256 of the stored bytes; also the strong ETag." },
    has_gps: { type: "boolean", description: "Whether the stored bytes carry GPS coordinates." },
    thumbhash: {
      type: ["string", "null"],
      description: "ThumbHash (base64) of the image as shown: a tiny placeholder to paint while the image loads.",
    },
    exif: {
      type: ["object", "null"],
      description: "Camera highlights from the image's EXIF, computed at upload; null when it records none.",
      properties: {
        make: nullableString,
        model: nullableString,
        lens: nullableString,
        taken_at: { ...nullableString, description: "ISO 8601 local time; with an offset only when the file records one." },
        orientation: { type: ["integer", "null"], minimum: 1, maximum: 8 },
      },
    },
    created_at: { type: "string", format: "date-time" },
    updated_at: { type: "string", format: "date-time" },
  },
} as const;

export function imagePath(name: string): string {
  return `/image/${encodeURIComponent(name)}/`;
}

export function baseUrl(request: FastifyRequest): string {
  return `${request.protocol}://${request.host}`;
}

export function presentImage(row: ImageRow, base: string): ImageObject {
  const metadata = readMetadata(row);
  return {
    name: row.name,
    image_name: row.name,
    url: base + imagePath(row.name),
    content_type: row.content_type,
    format: row.format,
    width: row.width,
    height: row.height,
    pages: row.pages,
    bytes: row.bytes,
    sha256: row.sha256,
    has_gps: row.has_gps === 1,
    thumbhash: metadata?.thumbhash ?? null,
    exif: metadata?.exif ?? null,
    created_at: row.created_at,
    updated_at: row.updated_at,
  };
}

export interface AccessKeyObject {
  id: string;
  label: string;
  prefix: string;
  scope: string;
  created_at: string;
  last_used_at: string | null;
  expires_at: string | null;
  revoked_at: string | null;
}

export function presentKey(row: AccessKeyRow): AccessKeyObject {
  return {
    id: row.id,
    label: row.label,
    prefix: row.display_prefix,
    scope: row.scope,
    created_at: row.created_at,
    last_used_at: row.last_used_at,
    expires_at: row.expires_at,
    revoked_at: row.revoked_at,
  };
}
