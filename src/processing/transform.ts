import type { Readable } from "node:stream";
import { buffer as readAll } from "node:stream/consumers";
import sharp, { type Sharp } from "sharp";
import { AppError } from "../errors.js";
import { animatedOutputFormats, outputContentTypes, type SourceFormatInfo } from "./output-format.js";
import type { OutputFormat, TransformSpec } from "./transform-params.js";

/** What the transform needs to know about the stored image, all of it in its database row. */
export interface SourceImage extends SourceFormatInfo {
  /** Width as stored, before EXIF orientation. */
  width: number;
  /** Height of one frame as stored, before EXIF orientation. */
  height: number;
  /** EXIF orientation 1..8; 5..8 swap width and height when shown. */
  orientation?: number | undefined;
}

/**
 * Encoder CPU effort per format. The defaults (config.ts) come from bench/transform.ts: above
 * them each step costs far more time than it saves bytes.
 */
export interface EncoderEffort {
  /** 0 (fastest) .. 9. */
  avif: number;
  /** 0 (fastest) .. 6. */
  webp: number;
  /** 1 (fastest) .. 10. */
  gif: number;
}

export interface TransformOptions {
  /** Refuse sources larger than this (width × height × frames), as uploads do. */
  limitInputPixels: number;
  /** Refuse outputs larger than this (width × height × frames) before decoding anything. */
  maxOutputPixels: number;
  effort: EncoderEffort;
}

export interface OutputSize {
  width: number;
  /** Height of one frame. */
  height: number;
  /** Frames written: the source's for an animation kept animated, otherwise 1. */
  pages: number;
}

export interface TransformResult extends OutputSize {
  /** The encoded image. Variants are small, so a Buffer serves better than a stream. */
  data: Buffer;
  format: OutputFormat;
  contentType: string;
}

/** A stored image: a local file path, its bytes, or a stream of them (read whole, as sharp would). */
export type TransformInput = string | Buffer | Readable;

/** Whether the output keeps every frame: only animations (not TIFF pages) into GIF or WebP. */
export function keepsAnimation(source: SourceFormatInfo, format: OutputFormat): boolean {
  return source.pages > 1 && (source.format === "gif" || source.format === "webp") && animatedOutputFormats.has(format);
}

/**
 * The size sharp's resize will produce, computed without touching the image so that oversized
 * requests are refused before any work. Follows sharp's rules for each fit, including that
 * `contain` pads out to the box even when the image itself is not enlarged.
 */
export function planOutputSize(source: SourceImage, spec: TransformSpec, format: OutputFormat): OutputSize {
  const rotated = (source.orientation ?? 1) >= 5;
  const sourceWidth = rotated ? source.height : source.width;
  const sourceHeight = rotated ? source.width : source.height;
  const pages = keepsAnimation(source, format) ? source.pages : 1;
  const boxWidth = spec.width === undefined ? undefined : Math.round(spec.width * spec.dpr);
  const boxHeight = spec.height === undefined ? undefined : Math.round(spec.height * spec.dpr);
  const limitScale = (scale: number) => (spec.enlarge ? scale : Math.min(scale, 1));
  const scaled = (scale: number): OutputSize => ({
    width: Math.max(1, Math.round(sourceWidth * scale)),
    height: Math.max(1, Math.round(sourceHeight * scale)),
    pages,
  });
  const clamp = (box: number, side: number) => (spec.enlarge ? box : Math.min(box, side));

  if (boxWidth !== undefined && boxHeight !== undefined) {
    const widthScale = boxWidth / sourceWidth;
    const heightScale = boxHeight / sourceHeight;
    switch (spec.fit) {
      case "cover":
      case "fill":
        return { width: clamp(boxWidth, sourceWidth), height: clamp(boxHeight, sourceHeight), pages };
      case "contain":
        return { width: boxWidth, height: boxHeight, pages };
      case "inside":
        return scaled(limitScale(Math.min(widthScale, heightScale)));
      case "outside":
        return scaled(limitScale(Math.max(widthScale, heightScale)));
    }
  }
  if (boxWidth !== undefined) {
    if (spec.fit === "fill") return { width: clamp(boxWidth, sourceWidth), height: sourceHeight, pages };
    const size = scaled(limitScale(boxWidth / sourceWidth));
    return spec.fit === "contain" ? { ...size, width: boxWidth } : size;
  }
  if (boxHeight !== undefined) {
    if (spec.fit === "fill") return { width: sourceWidth, height: clamp(boxHeight, sourceHeight), pages };
    const size = scaled(limitScale(boxHeight / sourceHeight));
    return spec.fit === "contain" ? { ...size, height: boxHeight } : size;
  }
  return { width: sourceWidth, height: sourceHeight, pages };
}

/**
 * Refuses, before any decode, a transform whose output would exceed `maxOutputPixels`.
 * @throws AppError `output_too_large`
 */
export function assertOutputWithinLimit(
  source: SourceImage,
  spec: TransformSpec,
  format: OutputFormat,
  maxOutputPixels: number,
): OutputSize {
  const size = planOutputSize(source, spec, format);
  const pixels = size.width * size.height * size.pages;
  if (pixels > maxOutputPixels) {
    const frames = size.pages > 1 ? ` × ${size.pages} frames` : "";
    throw new AppError(
      "output_too_large",
      `The transform would produce ${size.width}×${size.height}${frames} pixels; the limit is ${maxOutputPixels} pixels.`,
    );
  }
  return size;
}

function encode(image: Sharp, format: OutputFormat, quality: number | undefined, effort: EncoderEffort): Sharp {
  switch (format) {
    case "jpeg":
      // JPEG has no alpha: transparent pixels (and `contain` padding) become white, not black.
      return image.flatten({ background: "#ffffff" }).jpeg({ quality });
    case "png":
      return image.png();
    case "webp":
      return image.webp({ quality, effort: effort.webp });
    case "avif":
      return image.avif({ quality, effort: effort.avif });
    case "gif":
      return image.gif({ effort: effort.gif });
  }
}

const transparent = { r: 0, g: 0, b: 0, alpha: 0 };

/**
 * Produces one variant of a stored image: auto-oriented from EXIF, resized per `spec`, encoded
 * as `format` (already negotiated) without any metadata (no EXIF, no GPS). Animated GIF/WebP stay
 * animated when `format` is GIF or WebP; other outputs take the first frame.
 *
 * @throws AppError `output_too_large` (before decoding), `too_many_pixels` for a source beyond
 *   `limitInputPixels`.
 */
export async function transformImage(
  input: TransformInput,
  source: SourceImage,
  spec: TransformSpec,
  format: OutputFormat,
  options: TransformOptions,
): Promise<TransformResult> {
  assertOutputWithinLimit(source, spec, format, options.maxOutputPixels);
  const animated = keepsAnimation(source, format);
  // sharp reads a stream whole into memory before decoding anyway; reading it here first lets a
  // failing stream reject this promise instead of leaving sharp waiting.
  const bytesOrPath = typeof input === "string" || Buffer.isBuffer(input) ? input : await readAll(input);

  let image = sharp(bytesOrPath, {
    autoOrient: true,
    limitInputPixels: options.limitInputPixels,
    pages: animated ? -1 : 1,
  });
  if (spec.width !== undefined || spec.height !== undefined) {
    image = image.resize({
      width: spec.width === undefined ? undefined : Math.round(spec.width * spec.dpr),
      height: spec.height === undefined ? undefined : Math.round(spec.height * spec.dpr),
      fit: spec.fit,
      withoutEnlargement: !spec.enlarge,
      background: transparent,
    });
  }
  image = encode(image, format, spec.quality, options.effort);

  try {
    const { data, info } = await image.toBuffer({ resolveWithObject: true });
    const pages = animated ? (info.pages ?? 1) : 1;
    return {
      data,
      format,
      contentType: outputContentTypes[format],
      width: info.width,
      height: info.pageHeight ?? info.height,
      pages,
    };
  } catch (error) {
    if (error instanceof Error && /pixel limit/i.test(error.message)) {
      throw new AppError("too_many_pixels", undefined, { cause: error });
    }
    throw error;
  }
}
