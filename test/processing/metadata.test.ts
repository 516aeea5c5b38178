import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { describe, test } from "node:test";
import sharp from "sharp";
import { thumbHashToApproximateAspectRatio, thumbHashToAverageRGBA } from "thumbhash";
import { describeImage, exifHighlights } from "../../src/processing/metadata.js";
import { probeImage } from "../../src/processing/probe.js";
import { defaultImageLimits, fixture } from "../helpers/fixtures.js";

/** A JPEG as a camera writes it: make, model, lens, capture time with its offset, GPS, orientation 6. */
async function cameraJpeg(photo: Record<string, string> = {}): Promise<Buffer> {
  return sharp({ create: { width: 120, height: 80, channels: 3, background: "#c04020" } })
    .withExif({
      IFD0: { Make: "Canon", Model: "Canon EOS R5" },
      IFD2: {
        DateTimeOriginal: "2023:07:14 18:30:05",
        OffsetTimeOriginal: "+02:00",
        LensModel: "RF24-105mm F4 L IS USM",
        ...photo,
      },
      IFD3: { GPSLatitudeRef: "N", GPSLatitude: "48/1 51/1 2976/100", GPSLongitudeRef: "E", GPSLongitude: "2/1 17/1 4020/100" },
    })
    .withMetadata({ orientation: 6 })
    .jpeg()
    .toBuffer();
}

async function exifOf(bytes: Buffer): Promise<Buffer> {
  const { exif } = await sharp(bytes).metadata();
  assert.ok(exif, "the test image carries EXIF");
  return exif;
}

void describe("describeImage", () => {
  void test("reads the camera highlights from EXIF", async () => {
    const bytes = await cameraJpeg();
    const description = await describeImage(bytes, await exifOf(bytes));
    assert.deepEqual(description.exif, {
      make: "Canon",
      model: "Canon EOS R5",
      lens: "RF24-105mm F4 L IS USM",
      taken_at: "2023-07-14T18:30:05+02:00",
      orientation: 6,
    });
  });

  void test("a capture time without a recorded offset is written without a zone", async () => {
    const bytes = await sharp({ create: { width: 8, height: 8, channels: 3, background: "#000" } })
      .withExif({ IFD2: { DateTimeOriginal: "2001:02:03 04:05:06" } })
      .jpeg()
      .toBuffer();
    const description = await describeImage(bytes, await exifOf(bytes));
    assert.equal(description.exif?.taken_at, "2001-02-03T04:05:06");
    assert.equal(description.exif?.make, null);
  });

  void test("the fixture with orientation 6 and GPS, through probeImage's EXIF block", async () => {
    const path = fixture("valid/exif-orientation6-gps.jpg").path;
    const info = await probeImage(path, defaultImageLimits);
    const description = await describeImage(path, info.exif);
    assert.deepEqual(description.exif, { make: "imgvault", model: "fixture camera", lens: null, taken_at: null, orientation: 6 });
  });

  void test("no EXIF, or EXIF that cannot be read, gives null", async () => {
    const path = fixture("valid/small.png").path;
    assert.equal((await describeImage(path, undefined)).exif, null);
    assert.equal(exifHighlights(Buffer.from("Exif\0\0this is not a TIFF header")), null);
    assert.equal(exifHighlights(Buffer.alloc(0)), null);
  });

  void test("the ThumbHash is of the image as shown: orientation 6 turns 120×80 into a portrait", async () => {
    const bytes = await cameraJpeg();
    const { thumbhash } = await describeImage(bytes, undefined);
    const hash = Buffer.from(thumbhash, "base64");
    assert.ok(hash.length > 5 && hash.length < 40, `${hash.length} bytes`);
    const ratio = thumbHashToApproximateAspectRatio(hash);
    assert.ok(Math.abs(ratio - 80 / 120) < 0.1, `aspect ratio ${ratio}`);
    const { r, g, b } = thumbHashToAverageRGBA(hash);
    assert.ok(r > 0.6 && g < 0.4 && b < 0.3, `average colour ${r},${g},${b} is the image's red`);
  });

  void test("the ThumbHash keeps transparency, and hasAlpha says so", async () => {
    const alpha = await describeImage(fixture("valid/alpha.png").path, undefined);
    assert.equal(alpha.hasAlpha, true);
    assert.ok(thumbHashToAverageRGBA(Buffer.from(alpha.thumbhash, "base64")).a < 0.95);
    const opaque = await describeImage(fixture("valid/photo.jpg").path, undefined);
    assert.equal(opaque.hasAlpha, false);
    assert.equal(thumbHashToAverageRGBA(Buffer.from(opaque.thumbhash, "base64")).a, 1);
  });

  void test("describes every format, animated ones from their first frame, from a path or a buffer", async () => {
    for (const name of ["valid/animated.gif", "valid/animated.webp", "valid/still.avif", "valid/three-pages.tiff", "valid/one-pixel.png"]) {
      const path = fixture(name).path;
      const fromPath = await describeImage(path, undefined);
      const fromBuffer = await describeImage(await readFile(path), undefined);
      assert.equal(fromBuffer.thumbhash, fromPath.thumbhash, name);
      assert.ok(Buffer.from(fromPath.thumbhash, "base64").length >= 5, name);
    }
  });

  void test("refuses a source over the pixel limit", async () => {
    await assert.rejects(describeImage(fixture("valid/photo.jpg").path, undefined, { limitInputPixels: 1000 }), /pixel limit/i);
  });
});
