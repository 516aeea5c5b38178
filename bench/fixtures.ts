/**
 * The images the benchmark serves and uploads, generated with sharp so nothing binary is committed.
 * Seeded noise keeps them identical from run to run, so figures stay comparable.
 */
import sharp from "sharp";

/** mulberry32: a tiny seeded generator, so every run draws the same pixels. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Gradients and waves under per-pixel noise: compresses like a photograph, not like a test card. */
function photoPixels(width: number, height: number, seed: number, noise: number): Buffer {
  const random = seededRandom(seed);
  const pixels = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const base = [
        200 * (x / width) + 30 * Math.sin(y / 37),
        180 * (y / height) + 40 * Math.sin(x / 53),
        120 + 80 * Math.sin((x + y) / 91),
      ];
      const offset = (y * width + x) * 3;
      for (let channel = 0; channel < 3; channel++) {
        pixels[offset + channel] = Math.max(0, Math.min(255, Math.round(base[channel]! + (random() - 0.5) * noise)));
      }
    }
  }
  return pixels;
}

/** A PNG of about 10 KB. */
export function smallPng(): Promise<Buffer> {
  const size = 60;
  return sharp(photoPixels(size, size, 7, 6), { raw: { width: size, height: size, channels: 3 } })
    .png({ compressionLevel: 9 })
    .toBuffer();
}

/** A 1600×1200 photo-like JPEG of about 1 MB. */
export function photoJpeg(): Promise<Buffer> {
  const width = 1600;
  const height = 1200;
  return sharp(photoPixels(width, height, 11, 56), { raw: { width, height, channels: 3 } })
    .jpeg({ quality: 93 })
    .toBuffer();
}
