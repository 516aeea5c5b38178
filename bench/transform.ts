/**
 * Transform speed, by hand: `npx tsx bench/transform.ts [image.jpg …]`.
 *
 * 1. The ceiling: sharp alone turning the 1600×1200 JPEG into a 300 px WebP in a loop, one job per
 *    core (as the server's work queue runs them), beside the same work through `transformImage`.
 * 2. The cost of each output format at 300 px, one job on one core, at the effort imgvault uses
 *    (config defaults) and at sharp's default, with the bytes written: the figures behind the
 *    encoder defaults in src/config.ts.
 *
 * Sources: the benchmarks' JPEG (test/fixtures/valid/photo.jpg, gradients under heavy per-pixel
 * noise) and a generated photo-like JPEG with detail at every scale, since encoder cost depends on
 * content; or the files named on the command line.
 */
import { readFile } from "node:fs/promises";
import { availableParallelism, loadavg } from "node:os";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import sharp, { type Sharp } from "sharp";
import { loadConfig } from "../src/config.js";
import { parseTransformParams, type OutputFormat } from "../src/processing/transform-params.js";
import { transformImage, type TransformOptions } from "../src/processing/transform.js";

// As the server runs sharp (src/processing/probe.ts): one libvips thread per job, no operation cache.
sharp.concurrency(1);
sharp.cache(false);

const cores = availableParallelism();
const config = loadConfig({});
const effort = { avif: config.transform.avifEffort, webp: config.transform.webpEffort, gif: config.transform.gifEffort };
const sharpDefaultEffort = { avif: 4, webp: 4, gif: 7 };
const width = 300;

/** Runs `job` in `parallel` loops for `seconds`; returns completed jobs per second. */
async function throughput(job: () => Promise<unknown>, parallel: number, seconds: number): Promise<number> {
  await job();
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  let done = 0;
  await Promise.all(
    Array.from({ length: parallel }, async () => {
      while (performance.now() < deadline) {
        await job();
        done += 1;
      }
    }),
  );
  return done / ((performance.now() - started) / 1000);
}

/** One job at a time for at least `seconds` (and 3 runs): wall and CPU milliseconds per job, output bytes. */
async function cost(job: () => Promise<Buffer>, seconds: number) {
  const bytes = (await job()).length;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  let runs = 0;
  while (runs < 3 || performance.now() - started < seconds * 1000) {
    await job();
    runs += 1;
  }
  const cpu = process.cpuUsage(cpuBefore);
  return { wallMs: (performance.now() - started) / runs, cpuMs: (cpu.user + cpu.system) / 1000 / runs, bytes };
}

/** Value noise summed over octaves: detail at every scale, as in a photograph. */
async function naturalPhoto(): Promise<Buffer> {
  const w = 1600;
  const h = 1200;
  let state = 7;
  const random = () => {
    state = (state * 1103515245 + 12345) & 0x7fffffff;
    return state / 0x7fffffff - 0.5;
  };
  const sum = new Float32Array(w * h * 3);
  for (let cell = 400, amplitude = 120; cell >= 2; cell = Math.floor(cell / 2), amplitude *= 0.82) {
    const gridWidth = Math.ceil(w / cell) + 2;
    const grid = Float32Array.from({ length: gridWidth * (Math.ceil(h / cell) + 2) * 3 }, random);
    for (let y = 0; y < h; y++) {
      const gy = Math.floor(y / cell);
      const fy = y / cell - gy;
      for (let x = 0; x < w; x++) {
        const gx = Math.floor(x / cell);
        const fx = x / cell - gx;
        for (let c = 0; c < 3; c++) {
          const at = (dx: number, dy: number) => grid[((gy + dy) * gridWidth + gx + dx) * 3 + c]!;
          const top = at(0, 0) * (1 - fx) + at(1, 0) * fx;
          const bottom = at(0, 1) * (1 - fx) + at(1, 1) * fx;
          sum[(y * w + x) * 3 + c]! += amplitude * (top * (1 - fy) + bottom * fy);
        }
      }
    }
  }
  const pixels = Buffer.from(sum.map((value) => Math.max(0, Math.min(255, 128 + value))));
  return sharp(pixels, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 85 }).toBuffer();
}

function encoder(format: OutputFormat, level: number | undefined): (image: Sharp) => Sharp {
  switch (format) {
    case "jpeg":
      return (image) => image.jpeg();
    case "png":
      return (image) => image.png();
    case "webp":
      return (image) => image.webp({ effort: level });
    case "avif":
      return (image) => image.avif({ effort: level });
    case "gif":
      return (image) => image.gif({ effort: level });
  }
}

const pad = (value: string | number, size: number) => String(value).padStart(size);

async function benchSource(label: string, jpeg: Buffer): Promise<void> {
  const { width: sourceWidth, height: sourceHeight } = await sharp(jpeg).metadata();
  console.log(`\n## ${label}: ${sourceWidth}×${sourceHeight} JPEG, ${Math.round(jpeg.length / 1024)} KB\n`);

  const sharpAlone = () => sharp(jpeg).resize(width).webp({ effort: effort.webp }).toBuffer();
  const options: TransformOptions = { limitInputPixels: config.maxPixels, maxOutputPixels: config.transform.maxOutputPixels, effort };
  const source = { format: "jpeg" as const, width: sourceWidth!, height: sourceHeight!, pages: 1, hasAlpha: false };
  const spec = parseTransformParams({ w: String(width), format: "webp" });
  const pipeline = () => transformImage(jpeg, source, spec, "webp", options);

  // Interleaved rounds, so load from elsewhere on the machine weighs on each figure alike.
  let ceiling = 0;
  let threaded = 0;
  let ours = 0;
  const rounds = 3;
  for (let round = 0; round < rounds; round++) {
    ceiling += (await throughput(sharpAlone, cores, 2)) / rounds;
    ours += (await throughput(pipeline, cores, 2)) / rounds;
    sharp.concurrency(cores);
    threaded += (await throughput(sharpAlone, 1, 2)) / rounds;
    sharp.concurrency(1);
  }
  console.log(`→ ${width} px WebP (effort ${effort.webp}), loops on all ${cores} cores:`);
  console.log(`  sharp alone, ${cores} jobs × 1 libvips thread (the ceiling): ${ceiling.toFixed(1)} req/s`);
  console.log(`  sharp alone, 1 job × ${cores} libvips threads:               ${threaded.toFixed(1)} req/s`);
  console.log(`  transformImage, ${cores} jobs × 1 thread:                    ${ours.toFixed(1)} req/s (${(ours / ceiling).toFixed(2)}× the ceiling)`);

  console.log(`\nCost per image → ${width} px, one job on one core:\n`);
  console.log(`${"format".padEnd(7)}${"effort".padEnd(22)}${pad("ms wall", 9)}${pad("ms CPU", 9)}${pad("bytes", 9)}`);
  const rows: Array<[OutputFormat, number | undefined, string]> = [
    ["jpeg", undefined, "-"],
    ["png", undefined, "-"],
    ["webp", effort.webp, `${effort.webp} (imgvault)`],
    ["avif", effort.avif, `${effort.avif} (imgvault)`],
    ["gif", effort.gif, `${effort.gif} (imgvault)`],
  ];
  for (const [format, level] of [["webp", sharpDefaultEffort.webp], ["avif", sharpDefaultEffort.avif], ["gif", sharpDefaultEffort.gif]] as const) {
    if (effort[format] !== level) rows.push([format, level, `${level} (sharp default)`]);
  }
  rows.push(["webp", 0, "0 (fastest)"], ["avif", 0, "0 (fastest)"]);
  for (const [format, level, name] of rows) {
    const encode = encoder(format, level);
    const measured = await cost(() => encode(sharp(jpeg).resize(width)).toBuffer(), 2);
    console.log(`${format.padEnd(7)}${name.padEnd(22)}${pad(measured.wallMs.toFixed(1), 9)}${pad(measured.cpuMs.toFixed(1), 9)}${pad(measured.bytes, 9)}`);
  }
  const decodeOnly = await cost(() => sharp(jpeg).resize(width).raw().toBuffer(), 2);
  console.log(`${"(decode + resize, no encoder)".padEnd(29)}${pad(decodeOnly.wallMs.toFixed(1), 9)}${pad(decodeOnly.cpuMs.toFixed(1), 9)}`);
}

const files = process.argv.slice(2);
console.log(`# imgvault transform benchmark — sharp ${sharp.versions.sharp}, libvips ${sharp.versions.vips}, ${cores} cores`);
const [load] = loadavg();
if (load! > 0.5) {
  console.log(`(load average ${load!.toFixed(1)} before starting: other work shares the cores; trust "ms CPU" over "ms wall")`);
}
if (files.length > 0) {
  for (const file of files) await benchSource(basename(file), await readFile(file));
} else {
  const fixture = fileURLToPath(new URL("../test/fixtures/valid/photo.jpg", import.meta.url));
  await benchSource("test/fixtures/valid/photo.jpg (the benchmarks' JPEG: gradients under heavy noise)", await readFile(fixture));
  await benchSource("generated photo-like JPEG (detail at every scale)", await naturalPhoto());
}
