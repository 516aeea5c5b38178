/**
 * Reads a V8 CPU profile (`node --cpu-prof`, or BENCH_PROFILE=DIR npm run bench) and prints where
 * the time went: the top functions by self time, and self time summed by package or source
 * directory, so that "what costs what" has numbers. Usage: tsx bench/profile-summary.ts FILE [TOP]
 */
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, topArg] = process.argv.slice(2);
if (!file) throw new Error("usage: profile-summary FILE [TOP]");
const top = Number(topArg ?? 30);
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;

const selfMicros = new Map<number, number>();
profile.samples.forEach((id, index) => selfMicros.set(id, (selfMicros.get(id) ?? 0) + (profile.timeDeltas[index] ?? 0)));
const total = [...selfMicros.values()].reduce((sum, value) => sum + value, 0);
const idle = profile.nodes.filter((node) => node.callFrame.functionName === "(idle)").reduce((sum, node) => sum + (selfMicros.get(node.id) ?? 0), 0);
const busy = total - idle;

/** Where a frame's code lives: an npm package, a directory of ours, or V8/Node internals. */
function area(url: string, functionName: string): string {
  if (!url) return functionName.startsWith("(") ? functionName : "(native)";
  const inPackage = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (inPackage) return inPackage[1]!;
  if (url.startsWith("node:")) return `node:${url.slice(5).split("/")[0]}`;
  const ours = /\/(dist|src)\/(.*)\/[^/]+$/.exec(url);
  if (ours) return `${ours[1]}/${ours[2]}`;
  return url.replace(/^.*\//, "");
}

const byFunction = new Map<string, number>();
const byArea = new Map<string, number>();
for (const node of profile.nodes) {
  const micros = selfMicros.get(node.id) ?? 0;
  if (!micros || node.callFrame.functionName === "(idle)") continue;
  const { functionName, url, lineNumber } = node.callFrame;
  const key = `${functionName || "(anonymous)"}  ${url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/(dist|src)\//, "$1/")}:${lineNumber + 1}`;
  byFunction.set(key, (byFunction.get(key) ?? 0) + micros);
  const where = area(url, functionName);
  byArea.set(where, (byArea.get(where) ?? 0) + micros);
}

// Inclusive time of our own functions (dist/ or src/): what each step of a request costs in all.
const byId = new Map(profile.nodes.map((node) => [node.id, node]));
const inclusive = new Map<number, number>();
const inclusiveOf = (id: number): number => {
  const known = inclusive.get(id);
  if (known !== undefined) return known;
  const node = byId.get(id);
  const value = (selfMicros.get(id) ?? 0) + (node?.children ?? []).reduce((sum, child) => sum + inclusiveOf(child), 0);
  inclusive.set(id, value);
  return value;
};
const ownInclusive = new Map<string, number>();
const walk = (id: number, open: Set<string>) => {
  const node = byId.get(id);
  if (!node) return;
  const { functionName, url, lineNumber } = node.callFrame;
  let key: string | undefined;
  if (/\/(dist|src)\//.test(url) && !url.includes("node_modules")) {
    key = `${functionName || "(anonymous)"}  ${url.replace(/^file:\/\/.*\/(dist|src)\//, "$1/")}:${lineNumber + 1}`;
    // A function on the stack twice (recursion, re-entry) is counted once.
    if (!open.has(key)) ownInclusive.set(key, (ownInclusive.get(key) ?? 0) + inclusiveOf(id));
  }
  const next = key ? new Set(open).add(key) : open;
  for (const child of node.children ?? []) walk(child, next);
};
walk(profile.nodes[0]!.id, new Set());

const percent = (micros: number) => `${((micros / busy) * 100).toFixed(1).padStart(5)}%`;
const print = (title: string, entries: Map<string, number>, count: number) => {
  process.stdout.write(`\n${title}\n`);
  for (const [name, micros] of [...entries].sort((a, b) => b[1] - a[1]).slice(0, count)) {
    process.stdout.write(`${percent(micros)}  ${(micros / 1000).toFixed(0).padStart(7)} ms  ${name}\n`);
  }
};
process.stdout.write(`${file}: ${(total / 1e6).toFixed(1)} s sampled, ${(busy / 1e6).toFixed(1)} s busy (percentages are of busy time)\n`);
print("Self time by package or directory", byArea, top);
print("Self time by function", byFunction, top);
print("Inclusive time of our own functions", ownInclusive, top);
