import { AppError } from "../errors.js";

/** How the image fills the `w`×`h` box; the semantics are sharp's `resize({ fit })`. */
export type FitMode = "cover" | "contain" | "fill" | "inside" | "outside";

/** Formats a transform can write. */
export type OutputFormat = "jpeg" | "png" | "webp" | "avif" | "gif";

/** `auto` picks AVIF, WebP or the source's format from the request's Accept header. */
export type RequestedFormat = OutputFormat | "auto";

/**
 * A validated transform request. Fields that would have no effect are already dropped (`fit`,
 * `enlarge` and `dpr` without `w` or `h`), so two requests that mean the same image have the
 * same spec and the same canonical string.
 */
export interface TransformSpec {
  /** Box width in CSS pixels (multiplied by `dpr`), 1..8192. */
  width?: number;
  /** Box height in CSS pixels (multiplied by `dpr`), 1..8192. */
  height?: number;
  fit: FitMode;
  /** Scale up images smaller than the box; by default they are never enlarged. */
  enlarge: boolean;
  /** Undefined: the source's own format (or JPEG/PNG when browsers cannot show it). */
  format?: RequestedFormat;
  /** Encoder quality 1..100; undefined: the encoder's default. Ignored by PNG and GIF. */
  quality?: number;
  /** Device pixel ratio, 1..4, at most two decimals. */
  dpr: number;
}

export const maxTransformSide = 8192;
export const fitModes: readonly FitMode[] = ["cover", "contain", "fill", "inside", "outside"];
export const outputFormats: readonly OutputFormat[] = ["jpeg", "png", "webp", "avif", "gif"];
const formatAliases: Record<string, RequestedFormat> = { jpg: "jpeg" };

/** Query parameters that belong to a transform, in canonical order. */
export const transformParameterNames = ["w", "h", "fit", "enlarge", "format", "q", "dpr"] as const;

const defaultSpec: TransformSpec = { fit: "inside", enlarge: false, dpr: 1 };

/** Shown back in error messages, shortened so a request cannot make us echo a megabyte. */
function quoted(value: string): string {
  return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
}

function invalid(name: string, expectation: string, value: string): AppError {
  return new AppError("invalid_parameter", `Parameter "${name}" must be ${expectation}; got ${quoted(value)}.`);
}

function integer(name: string, value: string, min: number, max: number): number {
  const parsed = /^\d{1,6}$/.test(value) ? Number(value) : Number.NaN;
  if (!(parsed >= min && parsed <= max)) throw invalid(name, `an integer from ${min} to ${max}`, value);
  return parsed;
}

/**
 * Reads the transform parameters of a query (as Fastify parses it: a repeated parameter is an
 * array). Unknown parameters are ignored, so the signing parameters (`sig`, `exp`, `kid`, `v`)
 * and cache busters pass through; a repeated transform parameter is refused because its meaning
 * would be ambiguous, which a signature must never be.
 *
 * @throws AppError `invalid_parameter` naming the parameter, for the first bad one.
 */
export function parseTransformParams(query: Record<string, unknown>): TransformSpec {
  const raw = new Map<string, string>();
  for (const name of transformParameterNames) {
    const value = query[name];
    if (value === undefined) continue;
    if (typeof value !== "string") throw new AppError("invalid_parameter", `Parameter "${name}" must be given once.`);
    raw.set(name, value);
  }

  const spec: TransformSpec = { ...defaultSpec };
  const w = raw.get("w");
  if (w !== undefined) spec.width = integer("w", w, 1, maxTransformSide);
  const h = raw.get("h");
  if (h !== undefined) spec.height = integer("h", h, 1, maxTransformSide);

  const fit = raw.get("fit");
  if (fit !== undefined) {
    if (!(fitModes as readonly string[]).includes(fit)) throw invalid("fit", `one of ${fitModes.join(", ")}`, fit);
    spec.fit = fit as FitMode;
  }

  const enlarge = raw.get("enlarge");
  if (enlarge !== undefined) {
    if (enlarge === "1" || enlarge === "true") spec.enlarge = true;
    else if (enlarge === "0" || enlarge === "false") spec.enlarge = false;
    else throw invalid("enlarge", "1 or 0", enlarge);
  }

  const format = raw.get("format");
  if (format !== undefined) {
    const lower = format.toLowerCase();
    const named = formatAliases[lower] ?? lower;
    if (named !== "auto" && !(outputFormats as readonly string[]).includes(named)) {
      throw invalid("format", `one of ${outputFormats.join(", ")}, auto`, format);
    }
    spec.format = named as RequestedFormat;
  }

  const q = raw.get("q");
  if (q !== undefined) spec.quality = integer("q", q, 1, 100);

  const dpr = raw.get("dpr");
  if (dpr !== undefined) {
    const parsed = /^\d(\.\d{1,2})?$/.test(dpr) ? Number(dpr) : Number.NaN;
    if (!(parsed >= 1 && parsed <= 4)) throw invalid("dpr", "a number from 1 to 4 with at most two decimals", dpr);
    spec.dpr = parsed;
  }

  if (spec.width === undefined && spec.height === undefined) {
    // Without a box these three change nothing; dropping them keeps one cache entry per image.
    spec.fit = defaultSpec.fit;
    spec.enlarge = defaultSpec.enlarge;
    spec.dpr = defaultSpec.dpr;
  }
  return spec;
}

/**
 * The spec as a query string in a fixed order with defaults left out: `w=300&fit=cover&format=webp`.
 * Equal specs give equal strings, and parsing the string gives the spec back. Empty when the spec
 * asks for nothing (the original is served). Cache keys, ETags and URL signatures are built on it.
 */
export function canonicalTransformParams(spec: TransformSpec): string {
  const parts: string[] = [];
  if (spec.width !== undefined) parts.push(`w=${spec.width}`);
  if (spec.height !== undefined) parts.push(`h=${spec.height}`);
  const hasBox = spec.width !== undefined || spec.height !== undefined;
  if (hasBox && spec.fit !== defaultSpec.fit) parts.push(`fit=${spec.fit}`);
  if (hasBox && spec.enlarge) parts.push("enlarge=1");
  if (spec.format !== undefined) parts.push(`format=${spec.format}`);
  if (spec.quality !== undefined) parts.push(`q=${spec.quality}`);
  if (hasBox && spec.dpr !== defaultSpec.dpr) parts.push(`dpr=${String(spec.dpr)}`);
  return parts.join("&");
}

/** True when the request names no transform at all: serve the stored bytes. */
export function isIdentityTransform(spec: TransformSpec): boolean {
  return canonicalTransformParams(spec) === "";
}

/**
 * The canonical string of what is actually produced once `format=auto` (or no format) is resolved
 * to `output`: the name of one variant, the same whichever way it was asked for. Quality is left
 * out for encoders that ignore it (PNG, GIF). Variant cache keys and transformed ETags use it.
 */
export function variantParams(spec: TransformSpec, output: OutputFormat): string {
  const ignoresQuality = output === "png" || output === "gif";
  return canonicalTransformParams({ ...spec, format: output, quality: ignoresQuality ? undefined : spec.quality });
}
