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

export type SniffResult = { kind: "image"; format: ImageFormat } | { kind: "svg" } | { kind: "unknown" };

/** How many leading bytes `sniff` needs to decide. */
export const sniffLength = 512;

const heifBrands = new Set(["heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"]);
const avifBrands = new Set(["avif", "avis"]);

/**
 * Decides the format from the file's first bytes, never from its name or the client's content
 * type. SVG is recognised only to be refused with a precise message: it can carry script.
 */
export function sniff(head: Buffer): SniffResult {
  const ascii = (start: number, end: number) => head.subarray(start, end).toString("latin1");
  if (head.length >= 3 && head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return image("jpeg");
  if (head.length >= 8 && head.subarray(0, 8).equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]))) {
    return image("png");
  }
  if (ascii(0, 6) === "GIF87a" || ascii(0, 6) === "GIF89a") return image("gif");
  if (ascii(0, 4) === "RIFF" && ascii(8, 12) === "WEBP") return image("webp");
  if (ascii(0, 4) === "II*\0" || ascii(0, 4) === "MM\0*") return image("tiff");
  if (head.length >= 12 && ascii(4, 8) === "ftyp") {
    const boxSize = head.readUInt32BE(0);
    const brands = [ascii(8, 12)];
    for (let offset = 16; offset + 4 <= Math.min(boxSize, head.length); offset += 4) brands.push(ascii(offset, offset + 4));
    if (brands.some((brand) => avifBrands.has(brand))) return image("avif");
    if (brands.some((brand) => heifBrands.has(brand))) return image("heif");
  }
  const text = head.toString("utf8").replace(/^\uFEFF/, "").trimStart().toLowerCase();
  if (/^(<\?xml[^>]*>\s*)?(<!--[\s\S]*?-->\s*)*(<!doctype svg[^>]*>\s*)?<svg[\s>]/.test(text)) return { kind: "svg" };
  return { kind: "unknown" };
}

function image(format: ImageFormat): SniffResult {
  return { kind: "image", format };
}
