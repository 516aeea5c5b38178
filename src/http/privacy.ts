import type { Config } from "../config.js";
import { stripModes, type StripMode } from "../processing/strip.js";

/** `?strip=gps|all` on uploads (POST and PATCH). */
export interface StripQuery {
  strip?: StripMode;
}

export const stripQuerySchema = {
  type: "object",
  properties: {
    strip: {
      type: "string",
      enum: [...stripModes],
      description:
        "Store a cleaned copy instead of the bytes as sent: `gps` removes the position (EXIF GPS, XMP that records one), `all` every EXIF/XMP/IPTC block. The orientation is applied so the picture looks the same.",
    },
  },
} as const;

/**
 * Headers for responses that carry image bytes. An image opened directly in a browser tab must
 * not run anything (an SVG or HTML that slipped through would be inert: no scripts, no requests,
 * sandboxed origin), and other sites may not embed it unless configured.
 */
export function imageSecurityHeaders(headers: Config["imageHeaders"]): Record<string, string> {
  const result: Record<string, string> = {};
  if (headers.contentSecurityPolicy !== "") result["content-security-policy"] = headers.contentSecurityPolicy;
  if (headers.crossOriginResourcePolicy !== "") result["cross-origin-resource-policy"] = headers.crossOriginResourcePolicy;
  return result;
}
