/**
 * The image fixture corpus (test/fixtures/, written by scripts/make-fixtures.ts) as a typed table:
 * what each file is and what imgvault must answer for it. Route tests, the hostile-input suite
 * and the processing tests all read this one table, so an expectation changes in one place.
 */
import { createWriteStream } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import { fileURLToPath } from "node:url";
import sharp from "sharp";
import { loadConfig } from "../../src/config.js";
import type { ErrorCode } from "../../src/errors.js";
import type { ImageLimits } from "../../src/processing/probe.js";
import type { ImageFormat } from "../../src/processing/sniff.js";

export const fixturesDir = fileURLToPath(new URL("../fixtures/", import.meta.url));

/** The limits a default configuration enforces (100 megapixels, 1000 frames); fixtures are judged by them. */
export const defaultImageLimits: ImageLimits = (() => {
  const { maxPixels, maxFrames } = loadConfig({});
  return { maxPixels, maxFrames };
})();

/** A file that must be accepted, and what probing it must report. */
export interface ValidExpectation {
  outcome: "valid";
  format: ImageFormat;
  contentType: string;
  width: number;
  /** Height of one frame or page. */
  height: number;
  pages: number;
  hasGps: boolean;
  orientation: number | undefined;
}

/** A file that must be refused, with the exact answer. */
export interface RefusedExpectation {
  outcome: "refused";
  status: number;
  code: ErrorCode;
  /**
   * Which step refuses it: `probe` (magic bytes and header, before any pixel is decoded) or
   * `decode` (the header is sound, the pixel data is not). Every bomb must be refused by `probe`.
   */
  stage: "probe" | "decode";
}

export type FixtureCategory = "valid" | "broken" | "not-an-image" | "bomb";

/** One file of the corpus. */
export interface Fixture {
  /** File name, unique in the corpus; the extension is what an uploader would claim, not the truth. */
  name: string;
  /** Absolute path. */
  path: string;
  category: FixtureCategory;
  description: string;
  expect: ValidExpectation | RefusedExpectation;
}

function valid(
  format: ImageFormat,
  width: number,
  height: number,
  extra: { pages?: number; hasGps?: boolean; orientation?: number } = {},
): ValidExpectation {
  const contentType = format === "jpeg" ? "image/jpeg" : `image/${format}`;
  return {
    outcome: "valid",
    format,
    contentType,
    width,
    height,
    pages: extra.pages ?? 1,
    hasGps: extra.hasGps ?? false,
    orientation: extra.orientation,
  };
}

const unsupported: RefusedExpectation = { outcome: "refused", status: 415, code: "unsupported_media_type", stage: "probe" };
const corruptAtProbe: RefusedExpectation = { outcome: "refused", status: 422, code: "corrupt_image", stage: "probe" };
const corruptAtDecode: RefusedExpectation = { outcome: "refused", status: 422, code: "corrupt_image", stage: "decode" };
const tooManyPixels: RefusedExpectation = { outcome: "refused", status: 413, code: "too_many_pixels", stage: "probe" };
const tooManyFrames: RefusedExpectation = { outcome: "refused", status: 413, code: "too_many_frames", stage: "probe" };

type Row = [name: string, category: FixtureCategory, description: string, expect: ValidExpectation | RefusedExpectation];

const rows: Row[] = [
  ["valid/small.png", "valid", "60×56 RGB noise PNG, about 10 KB", valid("png", 60, 56)],
  ["valid/alpha.png", "valid", "48×48 RGBA PNG, colour wheel fading to transparent", valid("png", 48, 48)],
  ["valid/one-pixel.png", "valid", "1×1 RGB PNG", valid("png", 1, 1)],
  ["valid/photo.jpg", "valid", "1600×1200 photo-like JPEG at quality 90, about 1 MB", valid("jpeg", 1600, 1200)],
  ["valid/small.jpg", "valid", "128×96 photo-like JPEG, about 4 KB", valid("jpeg", 128, 96)],
  [
    "valid/exif-orientation6-gps.jpg",
    "valid",
    "64×48 JPEG stored landscape, EXIF Orientation 6 (displays 48×64) and GPS latitude/longitude",
    valid("jpeg", 64, 48, { hasGps: true, orientation: 6 }),
  ],
  ["valid/xmp.jpg", "valid", "48×32 JPEG with an XMP packet (markup-like text that is not HTML)", valid("jpeg", 48, 32)],
  ["valid/animated.gif", "valid", "48×32 GIF, 3 frames, loops forever", valid("gif", 48, 32, { pages: 3 })],
  ["valid/still.gif", "valid", "64×64 single-frame noise GIF", valid("gif", 64, 64)],
  ["valid/animated.webp", "valid", "48×32 lossless WebP, 3 frames", valid("webp", 48, 32, { pages: 3 })],
  ["valid/still.webp", "valid", "64×48 lossy WebP", valid("webp", 64, 48)],
  ["valid/still.avif", "valid", "64×48 AVIF (AV1 in HEIF)", valid("avif", 64, 48)],
  ["valid/still.tiff", "valid", "40×30 LZW TIFF", valid("tiff", 40, 30, { orientation: 1 })],
  ["valid/three-pages.tiff", "valid", "40×30 TIFF with 3 pages", valid("tiff", 40, 30, { pages: 3, orientation: 1 })],

  ["hostile/truncated-scan.jpg", "broken", "small.jpg cut in the middle of its scan data", corruptAtDecode],
  ["hostile/first-100-bytes.jpg", "broken", "the first 100 bytes of small.jpg (ends inside the tables)", corruptAtProbe],
  ["hostile/truncated.png", "broken", "small.png cut in the middle of its IDAT chunk", corruptAtDecode],
  ["hostile/truncated.gif", "broken", "still.gif cut in half, inside its LZW data", corruptAtProbe],
  ["hostile/truncated.webp", "broken", "still.webp cut in half", corruptAtProbe],

  ["hostile/empty.png", "not-an-image", "zero bytes", unsupported],
  ["hostile/random-bytes.jpg", "not-an-image", "4096 seeded random bytes", unsupported],
  ["hostile/text.png", "not-an-image", "plain text", unsupported],
  ["hostile/page.jpg", "not-an-image", "an HTML page with a script", unsupported],
  ["hostile/document.png", "not-an-image", "a one-page PDF", unsupported],
  ["hostile/archive.gif", "not-an-image", "a ZIP archive holding one text file", unsupported],
  ["hostile/program.webp", "not-an-image", "an ELF64 x86-64 executable (exits 0)", unsupported],
  ["hostile/script.svg", "not-an-image", "an SVG with a <script> that posts document.cookie", unsupported],
  ["hostile/script-svg.png", "not-an-image", "the same SVG named .png", unsupported],
  ["hostile/polyglot-gif-html.gif", "not-an-image", "GIF89a followed by an HTML page with a script", unsupported],
  [
    "hostile/polyglot-decodable.gif",
    "not-an-image",
    "a whole, decodable 1×1 GIF whose comment block holds <script>",
    unsupported,
  ],

  ["hostile/bomb-40000x40000.png", "bomb", "PNG whose IHDR declares 40000×40000 (1.6 gigapixels); 390 bytes", tooManyPixels],
  ["hostile/bomb-65500x65500.jpg", "bomb", "small.jpg with its SOF0 patched to 65500×65500", tooManyPixels],
  ["hostile/bomb-huge-screen.gif", "bomb", "GIF with a 65535×65535 logical screen and one 1×1 frame", tooManyPixels],
  ["hostile/bomb-5000-frames.gif", "bomb", "1×1 GIF with 5000 frames; 115 KB", tooManyFrames],
  ["hostile/bomb-2000-pages.tiff", "bomb", "1×1 TIFF with 2000 pages sharing one pixel; 250 KB", tooManyFrames],
];

/** Every fixture, in a stable order (valid first). */
export const fixtures: readonly Fixture[] = rows.map(([name, category, description, expect]) => ({
  name,
  path: join(fixturesDir, name),
  category,
  description,
  expect,
}));

export type ValidFixture = Fixture & { expect: ValidExpectation };
export type RefusedFixture = Fixture & { expect: RefusedExpectation };

export const validFixtures: readonly ValidFixture[] = fixtures.filter(
  (fixture): fixture is ValidFixture => fixture.expect.outcome === "valid",
);
export const refusedFixtures: readonly RefusedFixture[] = fixtures.filter(
  (fixture): fixture is RefusedFixture => fixture.expect.outcome === "refused",
);

/** The fixture with this name (e.g. "valid/animated.gif"); throws on a typo rather than testing nothing. */
export function fixture(name: string): Fixture {
  const found = fixtures.find((candidate) => candidate.name === name);
  if (!found) throw new Error(`no fixture named ${name}`);
  return found;
}

/** A file written for one test; `remove()` deletes it with its temporary directory. */
export interface TempFile {
  path: string;
  remove(): Promise<void>;
}

async function tempFilePath(name: string): Promise<TempFile> {
  const dir = await mkdtemp(join(tmpdir(), "imgvault-fixture-"));
  return { path: join(dir, name), remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Writes a file of exactly `bytes` bytes, streamed in 1 MiB chunks so a test can make a file far
 * larger than it wants in memory. It starts with `head` (default: a real JPEG's first bytes, so
 * that only the size is wrong with it) and continues with a repeating non-zero pattern.
 */
export async function bigFile(bytes: number, options: { head?: Buffer; name?: string } = {}): Promise<TempFile> {
  const file = await tempFilePath(options.name ?? "big.jpg");
  const head = (options.head ?? Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00])).subarray(0, bytes);
  const chunk = Buffer.alloc(1024 * 1024);
  for (let index = 0; index < chunk.length; index++) chunk[index] = (index * 31 + 7) & 0xff;
  async function* content(): AsyncGenerator<Buffer> {
    yield head;
    for (let written = head.length; written < bytes; written += chunk.length) {
      yield chunk.subarray(0, Math.min(chunk.length, bytes - written));
    }
  }
  await pipeline(Readable.from(content()), createWriteStream(file.path));
  return file;
}

/**
 * Encodes a real JPEG of the given size from Gaussian noise (which hardly compresses: about
 * 0.9 bytes per pixel at quality 90), for tests that need a large but valid image.
 */
export async function noiseJpeg(width: number, height: number, options: { quality?: number } = {}): Promise<TempFile> {
  const file = await tempFilePath(`noise-${width}x${height}.jpg`);
  await sharp({
    create: { width, height, channels: 3, background: "#808080", noise: { type: "gaussian", mean: 128, sigma: 60 } },
  })
    .jpeg({ quality: options.quality ?? 90 })
    .toFile(file.path);
  return file;
}
