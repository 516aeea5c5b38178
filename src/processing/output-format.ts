import type { ImageFormat } from "./sniff.js";
import type { OutputFormat, RequestedFormat } from "./transform-params.js";

/** What format negotiation needs to know about the stored image. */
export interface SourceFormatInfo {
  format: ImageFormat;
  /** Frames of an animation; more than 1 keeps AVIF out of `auto`, which sharp cannot animate. */
  pages: number;
  /** Whether the image has an alpha channel; unknown counts as yes, so transparency is never lost. */
  hasAlpha?: boolean | undefined;
}

export interface NegotiatedFormat {
  format: OutputFormat;
  /** The choice depended on the Accept header: the response must carry `Vary: Accept`. */
  varyAccept: boolean;
}

export const outputContentTypes: Record<OutputFormat, string> = {
  jpeg: "image/jpeg",
  png: "image/png",
  webp: "image/webp",
  avif: "image/avif",
  gif: "image/gif",
};

/** Formats that can carry an animation out of sharp. */
export const animatedOutputFormats: ReadonlySet<OutputFormat> = new Set(["gif", "webp"]);

/**
 * The format a transform writes when the request names none: the source's own, or, for formats
 * browsers cannot show or transforms cannot write (TIFF, HEIF), PNG when there is alpha to keep
 * and JPEG otherwise.
 */
export function sourceOutputFormat(source: SourceFormatInfo): OutputFormat {
  switch (source.format) {
    case "jpeg":
    case "png":
    case "webp":
    case "avif":
    case "gif":
      return source.format;
    default:
      return source.hasAlpha === false ? "jpeg" : "png";
  }
}

/**
 * Media types the client accepts with a non-zero quality, from an Accept header. Only explicit
 * image types count: `*\/*` and `image/*` are sent by clients that cannot decode AVIF.
 */
function acceptedImageTypes(accept: string | undefined): Set<string> {
  const accepted = new Set<string>();
  if (!accept) return accepted;
  for (const range of accept.split(",")) {
    const [type, ...parameters] = range.split(";").map((part) => part.trim().toLowerCase());
    if (!type) continue;
    const q = parameters.find((parameter) => /^q\s*=/.test(parameter));
    const weight = q === undefined ? 1 : Number(q.slice(q.indexOf("=") + 1).trim());
    if (weight > 0) accepted.add(type);
  }
  return accepted;
}

/**
 * Resolves the requested format against the source and, for `auto`, the Accept header: AVIF if
 * accepted (and the source is a still image), then WebP, then the source's format.
 */
export function negotiateFormat(
  requested: RequestedFormat | undefined,
  source: SourceFormatInfo,
  accept: string | undefined,
): NegotiatedFormat {
  if (requested === undefined) return { format: sourceOutputFormat(source), varyAccept: false };
  if (requested !== "auto") return { format: requested, varyAccept: false };
  const accepted = acceptedImageTypes(accept);
  if (accepted.has("image/avif") && source.pages <= 1) return { format: "avif", varyAccept: true };
  if (accepted.has("image/webp")) return { format: "webp", varyAccept: true };
  return { format: sourceOutputFormat(source), varyAccept: true };
}
