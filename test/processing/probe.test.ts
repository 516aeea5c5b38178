import assert from "node:assert/strict";
import { readdir, stat } from "node:fs/promises";
import { join, relative } from "node:path";
import { describe, test } from "node:test";
import sharp from "sharp";
import { errorCatalogue, isAppError, type ErrorCode } from "../../src/errors.js";
import { decodeFully, probeImage, type ImageLimits } from "../../src/processing/probe.js";
import {
  bigFile,
  defaultImageLimits,
  fixture,
  fixtures,
  fixturesDir,
  noiseJpeg,
  refusedFixtures,
  validFixtures,
} from "../helpers/fixtures.js";

/** What an upload does with a file: read the header and enforce limits, then decode every pixel. */
async function validate(path: string, limits: ImageLimits) {
  const info = await probeImage(path, limits);
  await decodeFully(path, limits);
  return info;
}

function appError(code: ErrorCode, status: number) {
  return (error: unknown) => {
    assert.ok(isAppError(error), `expected an AppError, got ${String(error)}`);
    assert.equal(error.code, code);
    assert.equal(error.status, status);
    return true;
  };
}

async function listFiles(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const nested = await Promise.all(
    entries.map((entry) => (entry.isDirectory() ? listFiles(join(dir, entry.name)) : Promise.resolve([join(dir, entry.name)]))),
  );
  return nested.flat();
}

void describe("the fixture corpus", () => {
  void test("the table describes every file under test/fixtures, and nothing that is not there", async () => {
    const onDisk = (await listFiles(fixturesDir))
      .map((path) => relative(fixturesDir, path))
      .filter((name) => name !== "README.md")
      .sort();
    assert.deepEqual(onDisk, fixtures.map((entry) => entry.name).sort());
  });

  void test("stays small enough to commit (under 5 MB in all)", async () => {
    const sizes = await Promise.all((await listFiles(fixturesDir)).map(async (path) => (await stat(path)).size));
    assert.ok(sizes.reduce((sum, size) => sum + size, 0) < 5 * 1024 * 1024);
  });

  void test("each expected status is the catalogue's status for the expected code", () => {
    for (const entry of refusedFixtures) assert.equal(errorCatalogue[entry.expect.code].status, entry.expect.status, entry.name);
  });

  void test("the large JPEG and the small PNG are the sizes the benchmarks assume", async () => {
    const photoBytes = (await stat(fixture("valid/photo.jpg").path)).size;
    assert.ok(photoBytes > 900_000 && photoBytes < 1_100_000, `photo.jpg is ${photoBytes} bytes`);
    const pngBytes = (await stat(fixture("valid/small.png").path)).size;
    assert.ok(pngBytes > 8_000 && pngBytes < 12_000, `small.png is ${pngBytes} bytes`);
  });
});

void describe("probeImage then decodeFully, on default limits", () => {
  for (const entry of validFixtures) {
    void test(`accepts ${entry.name}: ${entry.description}`, async () => {
      const info = await validate(entry.path, defaultImageLimits);
      const { format, contentType, width, height, pages, hasGps, orientation } = info;
      assert.deepEqual(
        { format, contentType, width, height, pages, hasGps, orientation },
        {
          format: entry.expect.format,
          contentType: entry.expect.contentType,
          width: entry.expect.width,
          height: entry.expect.height,
          pages: entry.expect.pages,
          hasGps: entry.expect.hasGps,
          orientation: entry.expect.orientation,
        },
      );
    });
  }

  for (const entry of refusedFixtures) {
    const { code, status, stage } = entry.expect;
    void test(`refuses ${entry.name} with ${status} ${code} at ${stage}: ${entry.description}`, async () => {
      if (stage === "probe") {
        await assert.rejects(probeImage(entry.path, defaultImageLimits), appError(code, status));
      } else {
        await probeImage(entry.path, defaultImageLimits);
        await assert.rejects(decodeFully(entry.path, defaultImageLimits), appError(code, status));
      }
    });
  }
});

void describe("decompression bombs", () => {
  void test("every bomb in the table is refused by probeImage, before any decode", () => {
    const bombs = fixtures.filter((entry) => entry.category === "bomb");
    assert.equal(bombs.length, 5);
    for (const bomb of bombs) assert.equal(bomb.expect.outcome === "refused" && bomb.expect.stage, "probe", bomb.name);
  });

  const generous: ImageLimits = { maxPixels: 10_000_000_000, maxFrames: 100_000 };

  // With limits raised, probeImage reports what the header claims. Most bombs hold far less pixel
  // data than they declare, so a probe that decoded would fail instead: the refusal on default
  // limits comes from the header alone.
  const declared: Array<[name: string, width: number, height: number, pages: number]> = [
    ["hostile/bomb-40000x40000.png", 40000, 40000, 1],
    ["hostile/bomb-65500x65500.jpg", 65500, 65500, 1],
    ["hostile/bomb-5000-frames.gif", 1, 1, 5000],
    ["hostile/bomb-2000-pages.tiff", 1, 1, 2000],
  ];
  for (const [name, width, height, pages] of declared) {
    void test(`${name} declares ${width}×${height}×${pages} in its header`, async () => {
      const info = await probeImage(fixture(name).path, generous);
      assert.deepEqual([info.width, info.height, info.pages], [width, height, pages]);
    });
  }

  void test("a bomb's pixel data is not whole: decoding the PNG bomb without limits would fail anyway", async () => {
    await assert.rejects(decodeFully(fixture("hostile/bomb-40000x40000.png").path, generous), appError("corrupt_image", 422));
  });

  void test("the huge-screen GIF decodes as 1×1 in libvips, so only the header check catches it", async () => {
    const path = fixture("hostile/bomb-huge-screen.gif").path;
    const metadata = await sharp(path).metadata();
    assert.deepEqual([metadata.width, metadata.height], [1, 1]);
    await assert.rejects(probeImage(path, defaultImageLimits), appError("too_many_pixels", 413));
    const info = await probeImage(path, generous);
    assert.deepEqual([info.width, info.height], [1, 1]);
  });

  void test("decodeFully on its own still refuses the pixel bombs with too_many_pixels (sharp's limitInputPixels)", async () => {
    for (const name of ["hostile/bomb-40000x40000.png", "hostile/bomb-65500x65500.jpg"]) {
      await assert.rejects(decodeFully(fixture(name).path, defaultImageLimits), appError("too_many_pixels", 413), name);
    }
  });
});

void describe("limits are configuration", () => {
  void test("a width × height exactly at the limit is accepted, one pixel under it is refused", async () => {
    const path = fixture("valid/small.png").path;
    await validate(path, { maxPixels: 60 * 56, maxFrames: 1 });
    await assert.rejects(probeImage(path, { maxPixels: 60 * 56 - 1, maxFrames: 1 }), appError("too_many_pixels", 413));
  });

  void test("the photo is refused under a 1-megapixel limit", async () => {
    await assert.rejects(
      probeImage(fixture("valid/photo.jpg").path, { maxPixels: 1_000_000, maxFrames: 1 }),
      appError("too_many_pixels", 413),
    );
  });

  void test("frames count against maxFrames: 3 frames pass at 3 and fail at 2", async () => {
    for (const name of ["valid/animated.gif", "valid/animated.webp", "valid/three-pages.tiff"]) {
      const path = fixture(name).path;
      assert.equal((await validate(path, { maxPixels: 1_000_000, maxFrames: 3 })).pages, 3, name);
      await assert.rejects(probeImage(path, { maxPixels: 1_000_000, maxFrames: 2 }), appError("too_many_frames", 413), name);
    }
  });

  void test("the pixels of all frames together count against maxPixels", async () => {
    // Each 48×32 frame is under the limit; the three together are not.
    await assert.rejects(
      probeImage(fixture("valid/animated.gif").path, { maxPixels: 48 * 32 * 2, maxFrames: 10 }),
      appError("too_many_pixels", 413),
    );
  });
});

void describe("large files made at test time", () => {
  void test("bigFile writes exactly the requested size and starts with a JPEG signature", async () => {
    const file = await bigFile(3 * 1024 * 1024 + 5);
    try {
      assert.equal((await stat(file.path)).size, 3 * 1024 * 1024 + 5);
      // A JPEG start and then no image: refused as corrupt, never accepted.
      await assert.rejects(probeImage(file.path, defaultImageLimits), appError("corrupt_image", 422));
    } finally {
      await file.remove();
    }
  });

  void test("noiseJpeg encodes a real image of the requested size", async () => {
    const file = await noiseJpeg(300, 200);
    try {
      const info = await validate(file.path, defaultImageLimits);
      assert.deepEqual([info.format, info.width, info.height], ["jpeg", 300, 200]);
    } finally {
      await file.remove();
    }
  });
});
