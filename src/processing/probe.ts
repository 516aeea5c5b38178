import { open } from "node:fs/promises";
import exifReader from "exif-reader";
import sharp, { type Metadata } from "sharp";
import { AppError } from "../errors.js";
import { contentTypes, sniff, sniffLength, type ImageFormat } from "./sniff.js";

export interface ImageLimits {
  maxPixels: number;
  maxFrames: number;
}

/** What a validated image is, read from its own bytes. */
export interface ImageInfo {
  format: ImageFormat;
  contentType: string;
  width: number;
  /** Height of one frame or page. */
  height: number;
  /** Frames of an animation or pages of a TIFF; 1 for a still image. */
  pages: number;
  hasGps: boolean;
  /** EXIF orientation (1–8) when present. */
  orientation: number | undefined;
  /** The raw EXIF block, for metadata extraction further on. */
  exif: Buffer | undefined;
}

// Let libvips use one thread per image: the work queue runs one image per core, which gives the
// best throughput on small machines and keeps memory proportional to the number of workers.
sharp.concurrency(1);
// The variant and upload paths decode each file once; libvips' operation cache only holds memory.
sharp.cache(false);

async function readHead(path: string): Promise<Buffer> {
  const handle = await open(path, "r");
  try {
    const buffer = Buffer.alloc(sniffLength);
    const { bytesRead } = await handle.read(buffer, 0, sniffLength, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

/**
 * Identifies the image in the file at `path` from its header alone and enforces the limits
 * before any pixel is decoded: a decompression bomb is refused in milliseconds.
 */
export async function probeImage(path: string, limits: ImageLimits): Promise<ImageInfo> {
  const head = await readHead(path);
  if (head.length === 0) throw new AppError("unsupported_media_type", "The file is empty.");
  const sniffed = sniff(head);
  if (sniffed.kind === "svg") {
    throw new AppError("unsupported_media_type", "SVG images are not accepted: they can carry scripts.");
  }
  if (sniffed.kind === "polyglot") {
    throw new AppError("unsupported_media_type", "The file carries HTML or script markup besides its image data.");
  }
  if (sniffed.kind === "unknown") throw new AppError("unsupported_media_type");

  let metadata: Metadata;
  try {
    metadata = await sharp(path, { pages: -1, limitInputPixels: false }).metadata();
  } catch (error) {
    throw new AppError("corrupt_image", undefined, { cause: error });
  }
  const width = metadata.width;
  const frameHeight = metadata.pageHeight ?? metadata.height;
  const pages = metadata.pages ?? 1;
  if (!width || !frameHeight) throw new AppError("corrupt_image", "The image header declares no dimensions.");
  if (sniffed.format === "gif" && head.length >= 10) {
    // libvips sizes a GIF by its frames and ignores a logical screen larger than them, but
    // browsers and other decoders allocate the whole screen: a huge one is a bomb all the same.
    const screenWidth = head.readUInt16LE(6);
    const screenHeight = head.readUInt16LE(8);
    if (screenWidth * screenHeight > limits.maxPixels) {
      throw new AppError(
        "too_many_pixels",
        `The GIF's logical screen is ${screenWidth}×${screenHeight} pixels; the limit is ${limits.maxPixels} pixels.`,
      );
    }
  }
  if (width * frameHeight > limits.maxPixels) {
    throw new AppError(
      "too_many_pixels",
      `The image is ${width}×${frameHeight} pixels; the limit is ${limits.maxPixels} pixels.`,
    );
  }
  if (pages > limits.maxFrames) {
    throw new AppError("too_many_frames", `The image has ${pages} frames or pages; the limit is ${limits.maxFrames}.`);
  }
  if (width * frameHeight * pages > limits.maxPixels) {
    throw new AppError(
      "too_many_pixels",
      `The image's ${pages} frames hold ${width * frameHeight * pages} pixels; the limit is ${limits.maxPixels}.`,
    );
  }

  let format = sniffed.format;
  if (format === "heif" || format === "avif") {
    // sharp names both "heif"; the compression tells AVIF (AV1) from HEIC (HEVC), which libvips'
    // prebuilt binaries cannot decode for patent reasons.
    if (metadata.compression === "av1") format = "avif";
    else throw new AppError("unsupported_media_type", "HEIC images (HEVC) are not supported; AVIF is.");
  }
  return {
    format,
    contentType: contentTypes[format],
    width,
    height: frameHeight,
    pages,
    hasGps: hasGps(metadata.exif),
    orientation: metadata.orientation,
    exif: metadata.exif,
  };
}

/**
 * Decodes every pixel of every frame once, proving the file is a whole image. `stats()` streams
 * through the image without keeping the decoded pixels, so memory stays bounded by a few scanlines.
 */
export async function decodeFully(path: string, limits: ImageLimits): Promise<void> {
  try {
    await sharp(path, { pages: -1, limitInputPixels: limits.maxPixels, sequentialRead: true, failOn: "warning" }).stats();
  } catch (error) {
    // sharp's own pixel limit: reached only when a caller skipped probeImage, and still a limit.
    if (error instanceof Error && error.message.includes("exceeds pixel limit")) {
      throw new AppError("too_many_pixels", undefined, { cause: error });
    }
    throw new AppError("corrupt_image", undefined, { cause: error });
  }
}

function hasGps(exif: Buffer | undefined): boolean {
  if (!exif) return false;
  try {
    const gps = exifReader(exif).GPSInfo;
    return gps !== undefined && (gps.GPSLatitude !== undefined || gps.GPSLongitude !== undefined);
  } catch {
    return false;
  }
}
