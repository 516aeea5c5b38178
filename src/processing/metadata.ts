import exifReader from "exif-reader";
import sharp from "sharp";
import { rgbaToThumbHash } from "thumbhash";

/**
 * Camera facts worth showing, in the image object's JSON shape. A field the file does not
 * record is null.
 */
export interface ExifHighlights {
  make: string | null;
  model: string | null;
  lens: string | null;
  /**
   * When the picture was taken, ISO 8601. EXIF records local wall-clock time: the offset is
   * appended only when the file records it (OffsetTimeOriginal), otherwise the time has no zone.
   */
  taken_at: string | null;
  /** EXIF orientation 1..8. */
  orientation: number | null;
}

/** What is computed once at upload and stored with the image. */
export interface ImageDescription {
  /** ThumbHash (base64) of the image as shown (auto-oriented): a placeholder a page paints while loading. */
  thumbhash: string;
  /** Null when the file carries no EXIF or none of the highlights. */
  exif: ExifHighlights | null;
  /** Whether the image has an alpha channel (format negotiation keeps transparency with it). */
  hasAlpha: boolean;
}

/** ThumbHash encodes at most 100×100 pixels. */
const thumbHashMaxSide = 100;

export interface DescribeOptions {
  /** Refuse sources larger than this, as uploads do. */
  limitInputPixels: number;
}

/**
 * Describes a validated image: its ThumbHash from a ≤100×100 downscale of the first frame, and
 * its EXIF highlights from `exif` (the raw block `probeImage` returned). Costs one downscaling
 * decode (JPEG shrinks on load, so about an eighth of a full decode).
 */
export async function describeImage(
  input: string | Buffer,
  exif: Buffer | undefined,
  options: DescribeOptions = { limitInputPixels: 100_000_000 },
): Promise<ImageDescription> {
  const image = sharp(input, { autoOrient: true, limitInputPixels: options.limitInputPixels });
  const [{ hasAlpha }, { data, info }] = await Promise.all([
    image.metadata(),
    image
      .clone()
      .resize(thumbHashMaxSide, thumbHashMaxSide, { fit: "inside" })
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true }),
  ]);
  const hash = rgbaToThumbHash(info.width, info.height, data);
  return {
    thumbhash: Buffer.from(hash).toString("base64"),
    exif: exif === undefined ? null : exifHighlights(exif),
    hasAlpha,
  };
}

function text(value: unknown): string | null {
  if (typeof value !== "string") return null;
  // EXIF strings are fixed-width fields, often padded with NULs or spaces.
  const trimmed = value.replace(/\0+$/g, "").trim();
  return trimmed === "" ? null : trimmed;
}

function localTime(value: unknown, offset: unknown): string | null {
  if (!(value instanceof Date) || Number.isNaN(value.getTime())) return null;
  // exif-reader reads the wall-clock time as if it were UTC; print it back without the Z.
  const wallClock = value.toISOString().slice(0, 19);
  const zone = text(offset);
  return zone !== null && /^[+-]\d{2}:\d{2}$/.test(zone) ? `${wallClock}${zone}` : wallClock;
}

/** Reads the highlights from a raw EXIF block; null when it is unreadable or holds none of them. */
export function exifHighlights(exif: Buffer): ExifHighlights | null {
  let tags: ReturnType<typeof exifReader>;
  try {
    tags = exifReader(exif);
  } catch {
    return null;
  }
  const orientation = tags.Image?.Orientation;
  const highlights: ExifHighlights = {
    make: text(tags.Image?.Make),
    model: text(tags.Image?.Model),
    lens: text(tags.Photo?.LensModel) ?? text(tags.Photo?.LensMake),
    taken_at:
      localTime(tags.Photo?.DateTimeOriginal, tags.Photo?.OffsetTimeOriginal) ??
      localTime(tags.Photo?.DateTimeDigitized, tags.Photo?.OffsetTimeDigitized),
    orientation: typeof orientation === "number" && orientation >= 1 && orientation <= 8 ? orientation : null,
  };
  return Object.values(highlights).every((value) => value === null) ? null : highlights;
}
