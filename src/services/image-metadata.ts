import type { ImageRow } from "../db/schema.js";
import type { ExifHighlights, ImageDescription } from "../processing/metadata.js";
import type { SourceImage } from "../processing/transform.js";
import type { ImageFormat } from "../processing/sniff.js";

/**
 * What `images.metadata` holds (JSON text), computed once at upload from the validated file.
 * Rows stored before this existed hold null: their fields read as unknown.
 */
export interface StoredMetadata {
  /** ThumbHash, base64. */
  thumbhash: string | null;
  exif: ExifHighlights | null;
  has_alpha: boolean;
  /** EXIF orientation as probed (1..8), which transforms plan their output size with. */
  orientation: number | null;
}

export function encodeMetadata(description: ImageDescription, orientation: number | undefined): string {
  const stored: StoredMetadata = {
    thumbhash: description.thumbhash,
    exif: description.exif,
    has_alpha: description.hasAlpha,
    orientation: orientation ?? null,
  };
  return JSON.stringify(stored);
}

/** The row's metadata, or null when it has none (stored before metadata existed) or it is unreadable. */
export function readMetadata(row: Pick<ImageRow, "metadata">): StoredMetadata | null {
  if (row.metadata === null) return null;
  try {
    const parsed = JSON.parse(row.metadata) as Partial<StoredMetadata> | null;
    if (parsed === null || typeof parsed !== "object") return null;
    return {
      thumbhash: typeof parsed.thumbhash === "string" && parsed.thumbhash !== "" ? parsed.thumbhash : null,
      exif: parsed.exif && typeof parsed.exif === "object" ? parsed.exif : null,
      has_alpha: parsed.has_alpha === true,
      orientation: typeof parsed.orientation === "number" ? parsed.orientation : null,
    };
  } catch {
    return null;
  }
}

/** What a transform needs to know about a stored image, from its row alone. */
export function sourceImageOf(row: ImageRow): SourceImage {
  const metadata = readMetadata(row);
  return {
    format: row.format as ImageFormat,
    width: row.width,
    height: row.height,
    pages: row.pages,
    // Unknown (older rows) counts as alpha, so negotiation never drops transparency.
    hasAlpha: metadata === null ? undefined : metadata.has_alpha,
    orientation: metadata?.orientation ?? undefined,
  };
}
