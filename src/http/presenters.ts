import type { FastifyRequest } from "fastify";
import type { AccessKeyRow, ImageRow } from "../db/schema.js";

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
  created_at: string;
  updated_at: string;
}

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
