import { open } from "node:fs/promises";
import exifReader from "exif-reader";
import sharp, { type Exif, type Sharp } from "sharp";
import type { ImageInfo } from "./probe.js";

/**
 * What an upload may ask to have removed before the original is stored:
 * - `gps`: the EXIF GPS block (and an XMP packet that records a position); camera, date,
 *   exposure and copyright tags stay;
 * - `all`: every EXIF, XMP and IPTC block.
 * Either way the colour profile stays, so the picture looks the same.
 */
export type StripMode = "gps" | "all";
export const stripModes: readonly StripMode[] = ["gps", "all"];

/**
 * EXIF tags that `gps` keeps, by libvips IFD (0: the image, 2: the Exif sub-IFD). Anything not
 * listed goes with the GPS block: maker notes (which can hold serial numbers and positions), the
 * embedded thumbnail (which can show the picture before it was cropped) and unknown tags.
 */
const keptExifTags: Record<"IFD0" | "IFD2", readonly string[]> = {
  IFD0: ["Make", "Model", "Software", "DateTime", "Artist", "Copyright", "ImageDescription", "XResolution", "YResolution", "ResolutionUnit"],
  IFD2: [
    "DateTimeOriginal",
    "DateTimeDigitized",
    "OffsetTime",
    "OffsetTimeOriginal",
    "OffsetTimeDigitized",
    "ExposureTime",
    "FNumber",
    "ExposureProgram",
    "ISOSpeedRatings",
    "ExposureBiasValue",
    "MeteringMode",
    "Flash",
    "FocalLength",
    "FocalLengthIn35mmFilm",
    "WhiteBalance",
    "LensMake",
    "LensModel",
  ],
};
const rationalTags = new Set(["XResolution", "YResolution", "ExposureTime", "FNumber", "ExposureBiasValue", "FocalLength"]);
const dateTags = new Set(["DateTime", "DateTimeOriginal", "DateTimeDigitized"]);

/** How each format is written again: as close to the original as the format allows. */
function encode(pipeline: Sharp, info: ImageInfo, lossless: boolean): Sharp {
  switch (info.format) {
    case "jpeg":
      return pipeline.jpeg({ quality: 95, chromaSubsampling: "4:4:4" });
    case "png":
      return pipeline.png({ compressionLevel: 9 });
    case "webp":
      return pipeline.webp(lossless ? { lossless: true } : { quality: 95 });
    case "gif":
      return pipeline.gif();
    case "avif":
    case "heif":
      return pipeline.avif({ quality: 85, effort: 2 });
    case "tiff":
      return pipeline.tiff({ compression: "lzw" });
  }
}

/**
 * A sharp pipeline that reads the validated image at `path` and writes it again in its own format
 * without the metadata `mode` names, its EXIF orientation applied (so it looks the same in every
 * viewer), animation kept. The caller streams it to a new staged file, whose hash is what is stored.
 */
export async function stripMetadata(path: string, info: ImageInfo, mode: StripMode, limitInputPixels: number): Promise<Sharp> {
  const animated = info.pages > 1;
  let pipeline = sharp(path, { pages: animated ? -1 : 1, limitInputPixels, failOn: "none" });
  // libvips turns a multi-page image as one tall strip; orientation is a still-photo matter anyway.
  if (!animated && info.orientation !== undefined && info.orientation > 1) pipeline = pipeline.autoOrient();
  pipeline = pipeline.keepIccProfile();
  if (mode === "gps") {
    const kept = info.exif ? keptExif(info.exif) : undefined;
    if (kept) pipeline = pipeline.withExif(kept);
    const metadata = await sharp(path, { limitInputPixels }).metadata();
    if (metadata.xmp && !/GPS(Latitude|Longitude|Altitude)/i.test(metadata.xmp.toString("utf8"))) pipeline = pipeline.keepXmp();
  }
  return encode(pipeline, info, info.format === "webp" && (await isLosslessWebp(path)));
}

/** The EXIF tags `gps` keeps, as the strings libvips writes back; undefined when none survive. */
function keptExif(raw: Buffer): Exif | undefined {
  let parsed: Record<string, Record<string, unknown> | undefined>;
  try {
    parsed = exifReader(raw) as unknown as Record<string, Record<string, unknown> | undefined>;
  } catch {
    return undefined;
  }
  const exif: Exif = {};
  const groups = { IFD0: parsed.Image, IFD2: parsed.Photo } as const;
  for (const ifd of ["IFD0", "IFD2"] as const) {
    const source = groups[ifd];
    if (!source) continue;
    const tags: Record<string, string> = {};
    for (const tag of keptExifTags[ifd]) {
      const value = exifString(tag, source[tag]);
      if (value !== undefined) tags[tag] = value;
    }
    if (Object.keys(tags).length > 0) exif[ifd] = tags;
  }
  return Object.keys(exif).length > 0 ? exif : undefined;
}

function exifString(tag: string, value: unknown): string | undefined {
  if (typeof value === "string") {
    const text = value.replace(/\0+$/, "");
    return text === "" ? undefined : text;
  }
  if (value instanceof Date && dateTags.has(tag)) {
    // exif-reader reads EXIF's zone-less "YYYY:MM:DD HH:MM:SS" as UTC; write it back the same way.
    const iso = value.toISOString();
    return `${iso.slice(0, 10).replaceAll("-", ":")} ${iso.slice(11, 19)}`;
  }
  if (typeof value === "number" && Number.isFinite(value)) return rationalTags.has(tag) ? rational(value) : String(Math.round(value));
  if (Array.isArray(value) && value.every((item) => typeof item === "number")) return value.map((item: number) => String(Math.round(item))).join(" ");
  return undefined;
}

/** `n/d` for libvips: exact for the usual 1/125 s exposures and 2.8 apertures. */
function rational(value: number): string {
  if (value < 0) return `-${rational(-value)}`;
  if (Number.isInteger(value)) return `${value}/1`;
  const reciprocal = 1 / value;
  if (Math.abs(reciprocal - Math.round(reciprocal)) < 1e-6) return `1/${Math.round(reciprocal)}`;
  return `${Math.round(value * 10_000)}/10000`;
}

/** Whether a WebP holds lossless (VP8L) data, so that stripping does not make it lossy. */
async function isLosslessWebp(path: string): Promise<boolean> {
  const handle = await open(path, "r");
  try {
    const head = Buffer.alloc(4096);
    const { bytesRead } = await handle.read(head, 0, head.length, 0);
    return head.subarray(0, bytesRead).includes("VP8L") && !head.subarray(0, bytesRead).includes("VP8 ");
  } finally {
    await handle.close();
  }
}
