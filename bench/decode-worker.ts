/**
 * One core's share of the upload ceiling: decodes the same file in a loop from `startAt` (epoch ms)
 * for `durationMs`, then prints `{"decodes": N, "elapsedMs": T, "cpuMs": C}`. Mode `stats` proves the file
 * exactly as decodeFully in src/processing/probe.ts does (libvips on one thread, every pixel,
 * `stats()`); mode `raw` only decodes every pixel into memory, the cost of the decode itself.
 */
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import sharp from "sharp";

const [mode, file, startAtArg, durationArg] = process.argv.slice(2);
if ((mode !== "stats" && mode !== "raw") || !file || !startAtArg || !durationArg) {
  throw new Error("usage: decode-worker stats|raw FILE START_AT_MS DURATION_MS");
}
const startAt = Number(startAtArg);
const durationMs = Number(durationArg);

sharp.concurrency(1);
sharp.cache(false);
const bytes = readFileSync(file);
const input = () => sharp(bytes, { pages: -1, limitInputPixels: 100_000_000, sequentialRead: true, failOn: "warning" });
const decode = mode === "stats" ? () => input().stats() : () => input().raw().toBuffer();

// Warm the codec before the shared start, so every worker measures the same window.
await decode();
await sleep(Math.max(0, startAt - Date.now()));
const cpuBefore = process.cpuUsage();
let decodes = 0;
const deadline = startAt + durationMs;
while (Date.now() < deadline) {
  await decode();
  decodes += 1;
}
const cpu = process.cpuUsage(cpuBefore);
process.stdout.write(`${JSON.stringify({ decodes, elapsedMs: Date.now() - startAt, cpuMs: (cpu.user + cpu.system) / 1000 })}\n`);
