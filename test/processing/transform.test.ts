import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable } from "node:stream";
import { after, before, describe, test } from "node:test";
import sharp from "sharp";
import { loadConfig } from "../../src/config.js";
import { isAppError } from "../../src/errors.js";
import { negotiateFormat } from "../../src/processing/output-format.js";
import { probeImage } from "../../src/processing/probe.js";
import { parseTransformParams, type OutputFormat } from "../../src/processing/transform-params.js";
import {
  planOutputSize,
  transformImage,
  type SourceImage,
  type TransformInput,
  type TransformOptions,
} from "../../src/processing/transform.js";
import { defaultImageLimits, fixture } from "../helpers/fixtures.js";

const config = loadConfig({});
const options: TransformOptions = {
  limitInputPixels: config.maxPixels,
  maxOutputPixels: config.transform.maxOutputPixels,
  effort: { avif: config.transform.avifEffort, webp: config.transform.webpEffort, gif: config.transform.gifEffort },
};

/** The source as the images table knows it: what probing it at upload found. */
async function sourceOf(path: string): Promise<SourceImage> {
  const info = await probeImage(path, defaultImageLimits);
  const { hasAlpha } = await sharp(path).metadata();
  return { format: info.format, width: info.width, height: info.height, pages: info.pages, orientation: info.orientation, hasAlpha };
}

/** Runs a transform from query parameters, as the route will: parse, negotiate, transform. */
async function run(path: string, query: Record<string, string>, accept?: string, input: TransformInput = path) {
  const source = await sourceOf(path);
  const spec = parseTransformParams(query);
  const { format } = negotiateFormat(spec.format, source, accept);
  return transformImage(input, source, spec, format, options);
}

/** What the output really is, read back from its bytes. */
async function decoded(data: Buffer) {
  const metadata = await sharp(data, { pages: -1 }).metadata();
  const format = metadata.format === "heif" && metadata.compression === "av1" ? "avif" : metadata.format;
  return {
    format,
    width: metadata.width,
    height: metadata.pageHeight ?? metadata.height,
    pages: metadata.pages ?? 1,
    hasAlpha: metadata.hasAlpha,
    exif: metadata.exif,
    orientation: metadata.orientation,
  };
}

let dir: string;
/** A 400×300 opaque JPEG whose sizes make every fit mode distinguishable. */
let landscape: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "imgvault-transform-"));
  landscape = join(dir, "landscape.jpg");
  await sharp({ create: { width: 400, height: 300, channels: 3, background: "#3080c0" } })
    .jpeg()
    .toFile(landscape);
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

void describe("transformImage: sizes", () => {
  void test("resizes the 1600×1200 photo to 300 px wide WebP", async () => {
    const result = await run(fixture("valid/photo.jpg").path, { w: "300", format: "webp" });
    assert.deepEqual(await decoded(result.data).then(({ format, width, height }) => ({ format, width, height })), {
      format: "webp",
      width: 300,
      height: 225,
    });
    assert.deepEqual([result.width, result.height, result.pages], [300, 225, 1]);
    assert.equal(result.contentType, "image/webp");
  });

  // [query, expected size] on the 400×300 source; sharp's rules for each fit.
  const sizes: Array<[Record<string, string>, [number, number]]> = [
    [{ w: "200" }, [200, 150]],
    [{ h: "100" }, [133, 100]],
    [{ w: "200", h: "200" }, [200, 150]],
    [{ w: "200", h: "200", fit: "inside" }, [200, 150]],
    [{ w: "200", h: "200", fit: "cover" }, [200, 200]],
    [{ w: "200", h: "200", fit: "contain" }, [200, 200]],
    [{ w: "200", h: "200", fit: "fill" }, [200, 200]],
    [{ w: "200", h: "200", fit: "outside" }, [267, 200]],
    [{ w: "200", fit: "fill" }, [200, 300]],
    [{ w: "800" }, [400, 300]],
    [{ w: "800", enlarge: "1" }, [800, 600]],
    [{ w: "800", h: "800", fit: "cover" }, [400, 300]],
    [{ w: "800", h: "800", fit: "cover", enlarge: "1" }, [800, 800]],
    [{ w: "600", h: "200", fit: "cover" }, [400, 200]],
    [{ w: "800", h: "800", fit: "contain" }, [800, 800]],
    [{ w: "200", h: "600", fit: "outside" }, [400, 300]],
    [{ w: "200", h: "600", fit: "outside", enlarge: "1" }, [800, 600]],
    [{ w: "100", dpr: "2" }, [200, 150]],
    [{ w: "100", h: "100", fit: "cover", dpr: "1.5" }, [150, 150]],
    [{ w: "300", dpr: "4" }, [400, 300]],
    [{ w: "300", dpr: "4", enlarge: "1" }, [1200, 900]],
  ];
  for (const [query, [width, height]] of sizes) {
    void test(`${new URLSearchParams(query).toString()} → ${width}×${height}, as planned before decoding`, async () => {
      const result = await run(landscape, { ...query, format: "png" });
      const real = await decoded(result.data);
      assert.deepEqual([real.width, real.height], [width, height]);
      const planned = planOutputSize(await sourceOf(landscape), parseTransformParams(query), "png");
      assert.deepEqual([planned.width, planned.height], [width, height]);
    });
  }

  void test("the planned size matches sharp's on many odd sizes, for every fit, with and without enlarge", async () => {
    const source = await sourceOf(landscape);
    const mismatches: string[] = [];
    for (const fit of ["cover", "contain", "fill", "inside", "outside"]) {
      for (const [w, h] of [["333", "222"], ["1000", "100"], ["7", undefined], [undefined, "451"], ["401", "299"]] as const) {
        for (const enlarge of ["0", "1"]) {
          const query: Record<string, string> = { fit, enlarge, format: "png" };
          if (w) query.w = w;
          if (h) query.h = h;
          const real = await decoded((await run(landscape, query)).data);
          const planned = planOutputSize(source, parseTransformParams(query), "png");
          if (real.width !== planned.width || real.height !== planned.height) {
            mismatches.push(`${JSON.stringify(query)}: sharp ${real.width}×${real.height}, planned ${planned.width}×${planned.height}`);
          }
        }
      }
    }
    assert.deepEqual(mismatches, []);
  });
});

void describe("transformImage: formats and quality", () => {
  for (const format of ["jpeg", "png", "webp", "avif", "gif"] satisfies OutputFormat[]) {
    void test(`writes ${format}, with its content type`, async () => {
      const result = await run(fixture("valid/small.jpg").path, { w: "64", format });
      assert.equal((await decoded(result.data)).format, format);
      assert.equal(result.format, format);
      assert.equal(result.contentType, `image/${format}`);
    });
  }

  void test("without format keeps the source's format", async () => {
    for (const name of ["valid/small.png", "valid/still.webp", "valid/still.avif", "valid/still.gif"]) {
      const path = fixture(name).path;
      const result = await run(path, { w: "32" });
      assert.equal((await decoded(result.data)).format, (await sourceOf(path)).format, name);
    }
  });

  void test("a TIFF without format becomes JPEG (no alpha), since browsers cannot show TIFF", async () => {
    const result = await run(fixture("valid/still.tiff").path, { w: "20" });
    assert.equal((await decoded(result.data)).format, "jpeg");
  });

  void test("format=auto follows Accept", async () => {
    const path = fixture("valid/small.jpg").path;
    assert.equal((await run(path, { format: "auto" }, "image/avif,image/webp,*/*")).format, "avif");
    assert.equal((await run(path, { format: "auto" }, "image/webp,*/*")).format, "webp");
    const plain = await run(path, { format: "auto" }, "*/*");
    assert.equal((await decoded(plain.data)).format, "jpeg");
  });

  for (const format of ["jpeg", "webp", "avif"] as const) {
    void test(`q changes the ${format} encoder's quality: q=10 is much smaller than q=95`, async () => {
      const path = fixture("valid/photo.jpg").path;
      const low = await run(path, { w: "400", format, q: "10" });
      const high = await run(path, { w: "400", format, q: "95" });
      assert.ok(low.data.length * 2 < high.data.length, `${low.data.length} vs ${high.data.length}`);
    });
  }
});

void describe("transformImage: orientation and metadata", () => {
  const oriented = fixture("valid/exif-orientation6-gps.jpg").path;

  void test("auto-orients from EXIF: the 64×48 JPEG with orientation 6 comes out 48×64", async () => {
    const result = await run(oriented, { format: "png" });
    const real = await decoded(result.data);
    assert.deepEqual([real.width, real.height], [48, 64]);
    const resized = await decoded((await run(oriented, { w: "24" })).data);
    assert.deepEqual([resized.width, resized.height], [24, 32]);
  });

  void test("the source carries EXIF with GPS; no output carries EXIF, GPS or an orientation", async () => {
    const source = await sharp(oriented).metadata();
    assert.ok(source.exif, "the fixture has EXIF");
    for (const format of ["jpeg", "png", "webp", "avif"] as const) {
      const real = await decoded((await run(oriented, { w: "24", format })).data);
      assert.equal(real.exif, undefined, format);
      assert.ok(real.orientation === undefined || real.orientation === 1, format);
    }
    const bytes = (await run(oriented, { w: "24", format: "jpeg" })).data;
    assert.equal(bytes.includes(Buffer.from("Exif\0")), false);
    assert.equal(bytes.includes(Buffer.from("GPS")), false);
  });

  void test("a rotated source is planned with its shown size", async () => {
    const planned = planOutputSize(await sourceOf(oriented), parseTransformParams({ w: "24" }), "png");
    assert.deepEqual([planned.width, planned.height], [24, 32]);
  });
});

void describe("transformImage: animation and alpha", () => {
  const gif = fixture("valid/animated.gif").path;
  const webp = fixture("valid/animated.webp").path;

  void test("an animated GIF stays animated as GIF and as WebP, every frame resized", async () => {
    for (const format of ["gif", "webp"] as const) {
      const result = await run(gif, { w: "24", format });
      const real = await decoded(result.data);
      assert.deepEqual([real.format, real.width, real.height, real.pages], [format, 24, 16, 3]);
      assert.deepEqual([result.width, result.height, result.pages], [24, 16, 3]);
    }
  });

  void test("an animated WebP stays animated as GIF, and keeps its frame delays", async () => {
    const result = await run(webp, { w: "24", format: "gif" });
    const real = await sharp(result.data, { pages: -1 }).metadata();
    const source = await sharp(webp, { pages: -1 }).metadata();
    assert.equal(real.pages, 3);
    assert.deepEqual(real.delay, source.delay);
  });

  void test("format=auto keeps an animation animated (WebP, not AVIF) for a browser that takes both", async () => {
    const result = await run(gif, { w: "24", format: "auto" }, "image/avif,image/webp,*/*");
    assert.equal(result.format, "webp");
    assert.equal((await decoded(result.data)).pages, 3);
  });

  void test("formats that cannot animate take the first frame, at the frame's size", async () => {
    for (const format of ["png", "jpeg", "avif"] as const) {
      const result = await run(gif, { format });
      const real = await decoded(result.data);
      assert.deepEqual([real.width, real.height, real.pages], [48, 32, 1], format);
    }
  });

  void test("the pages of a TIFF are not an animation: WebP output takes the first page", async () => {
    const result = await run(fixture("valid/three-pages.tiff").path, { format: "webp" });
    const real = await decoded(result.data);
    assert.deepEqual([real.width, real.height, real.pages], [40, 30, 1]);
  });

  void test("alpha survives into PNG and WebP; JPEG paints transparency white", async () => {
    const path = fixture("valid/alpha.png").path;
    const corner = async (data: Buffer) => {
      const { data: pixels } = await sharp(data).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
      return [...pixels.subarray(0, 4)];
    };
    const source = await corner(await readFile(path));
    assert.equal(source[3], 0, "the fixture's corner is transparent");
    for (const format of ["png", "webp"] as const) {
      const result = await run(path, { format });
      assert.equal((await decoded(result.data)).hasAlpha, true, format);
      assert.equal((await corner(result.data))[3], 0, format);
    }
    const jpeg = await run(path, { format: "jpeg" });
    const [r, g, b, a] = await corner(jpeg.data);
    assert.ok(r! > 240 && g! > 240 && b! > 240 && a === 255, `corner is ${[r, g, b, a].join(",")}`);
  });

  void test("contain pads with transparency where the format has alpha", async () => {
    const result = await run(landscape, { w: "100", h: "100", fit: "contain", format: "png" });
    const { data, info } = await sharp(result.data).ensureAlpha().raw().toBuffer({ resolveWithObject: true });
    assert.deepEqual([info.width, info.height], [100, 100]);
    assert.equal(data[3], 0, "top-left corner is padding");
    assert.equal(data[(50 * 100 + 50) * 4 + 3], 255, "the centre is image");
  });
});

void describe("transformImage: inputs and limits", () => {
  void test("reads a Buffer or a stream the same as a path", async () => {
    const path = fixture("valid/small.jpg").path;
    const bytes = await readFile(path);
    const fromPath = await run(path, { w: "50", format: "png" });
    const fromBuffer = await run(path, { w: "50", format: "png" }, undefined, bytes);
    const fromStream = await run(path, { w: "50", format: "png" }, undefined, Readable.from([bytes.subarray(0, 1000), bytes.subarray(1000)]));
    assert.ok(fromBuffer.data.equals(fromPath.data));
    assert.ok(fromStream.data.equals(fromPath.data));
  });

  void test("a stream that fails rejects with its error instead of hanging", async () => {
    const path = fixture("valid/small.jpg").path;
    const bytes = await readFile(path);
    async function* failing() {
      yield bytes.subarray(0, 100);
      throw new Error("storage went away");
    }
    await assert.rejects(run(path, { w: "50" }, undefined, Readable.from(failing())), /storage went away/);
  });

  void test("refuses an output over the pixel limit with output_too_large, before reading the input", async () => {
    const source = await sourceOf(landscape);
    const spec = parseTransformParams({ w: "8192", h: "8192", fit: "fill", enlarge: "1" });
    await assert.rejects(
      transformImage(join(dir, "does-not-exist.jpg"), source, spec, "png", { ...options, maxOutputPixels: 25_000_000 }),
      (error: unknown) => isAppError(error) && error.code === "output_too_large" && error.status === 400 && /8192×8192/.test(error.message),
    );
  });

  void test("counts every frame of an animation against the output limit", async () => {
    const gif = fixture("valid/animated.gif").path;
    const spec = parseTransformParams({ w: "100", enlarge: "1" });
    const source = await sourceOf(gif);
    // 100×67 = 6700 pixels a frame, three frames: fits 25 000, not 20 000 (6700 × 3 = 20 100).
    await transformImage(gif, source, spec, "gif", { ...options, maxOutputPixels: 25_000 });
    await assert.rejects(
      transformImage(gif, source, spec, "gif", { ...options, maxOutputPixels: 20_000 }),
      (error: unknown) => isAppError(error) && error.code === "output_too_large",
    );
    await transformImage(gif, source, spec, "png", { ...options, maxOutputPixels: 20_000 });
  });

  void test("refuses a source over limitInputPixels with too_many_pixels", async () => {
    const path = fixture("valid/photo.jpg").path;
    await assert.rejects(
      transformImage(path, await sourceOf(path), parseTransformParams({ w: "10" }), "jpeg", { ...options, limitInputPixels: 1000 }),
      (error: unknown) => isAppError(error) && error.code === "too_many_pixels",
    );
  });

  void test("writes nothing to the source file", async () => {
    const copy = join(dir, "copy.jpg");
    const original = await readFile(fixture("valid/exif-orientation6-gps.jpg").path);
    await writeFile(copy, original);
    await run(copy, { w: "10", format: "webp" });
    assert.ok((await readFile(copy)).equals(original));
  });
});
