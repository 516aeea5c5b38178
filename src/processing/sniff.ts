/** Formats imgvault stores, named as sharp names them. */
export type ImageFormat = "jpeg" | "png" | "gif" | "webp" | "avif" | "heif" | "tiff";

export const contentTypes: Record<ImageFormat, string> = {
  jpeg: "image/jpeg",
  png: "image/png",
  gif: "image/gif",
  webp: "image/webp",
  avif: "image/avif",
  heif: "image/heif",
  tiff: "image/tiff",
};

export type SniffResult =
  | { kind: "image"; format: ImageFormat }
  /** Image magic, but HTML or script markup in the first bytes too: refused, see `carriesMarkup`. */
  | { kind: "polyglot"; format: ImageFormat }
  | { kind: "svg" }
  | { kind: "unknown" };

/** How many leading bytes `sniff` needs to decide. */
export const sniffLength = 512;

const heifBrands = new Set(["heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"]);
const avifBrands = new Set(["avif", "avis"]);

/**
 * Decides the format from the file's first bytes, never from its name or the client's content
 * type. SVG is recognised only to be refused with a precise message: it can carry script.
 */
export function sniff(head: Buffer): SniffResult {
  const format = imageFormat(head);
  if (format !== undefined) return carriesMarkup(head) ? { kind: "polyglot", format } : { kind: "image", format };
  const text = head.toString("utf8").replace(/^\uFEFF/, "").trimStart().toLowerCase();
  if (/^(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*(<!doctype svg[^>]*>\s*)?<svg[\s>]/.test(text)) return { kind: "svg" };
  return { kind: "unknown" };
}

function imageFormat(head: Buffer): ImageFormat | undefined {
  const ascii = (start: number, end: number) => head.subarray(start, end).toString("latin1");
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return "jpeg";
  if (head.length >= 8 && head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    return "png";
  }
  if (ascii(0, 6) === "GIF87a" || ascii(0, 6) === "GIF89a") return "gif";
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return "webp";
  if (ascii(0, 4) === "II*\0" || ascii(0, 4) === "MM\0*") return "tiff";
  if (head.length >= 12 && ascii(4, 8) === "ftyp") {
    const boxSize = head.readUInt32BE(0);
    const brands = [ascii(8, 12)];
    for (let offset = 16; offset + 4 <= Math.min(boxSize, head.length); offset += 4) brands.push(ascii(offset, offset + 4));
    if (brands.some((brand) => avifBrands.has(brand))) return "avif";
    if (brands.some((brand) => heifBrands.has(brand))) return "heif";
  }
  return undefined;
}

// Tags that content sniffers (old Internet Explorer scanned the first 256 bytes for them) take as
// HTML, each followed by a byte that ends a tag name. Only names of four letters or more (plus
// `<a href`): in compressed image data a short pattern like `<b>` turns up by chance about once
// per thousand files, these practically never, while XMP (`<x:xmpmeta`, `<rdf:…`) never matches.
const markupPattern =
  /<(?:(?:!doctype[\t\n\f\r ]+html|html|head|body|script|iframe|frameset|title|style|table|svg|img|object|embed|applet|plaintext|div|font|meta|link|form|base)[\t\n\f\r />]|a[\t\n\f\r ]+href[\t\n\f\r ]*=)/i;

/**
 * A file that starts like an image and carries HTML or script in its first bytes is a polyglot
 * (e.g. GIF89a followed by a page, or a GIF comment holding `<script>`): harmless as an image,
 * but a browser or proxy that sniffs would run it. No genuine image needs that, so it is refused.
 */
function carriesMarkup(head: Buffer): boolean {
  return markupPattern.test(head.toString("latin1"));
}
