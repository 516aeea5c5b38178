import { spawnSync } from "node:child_process";
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

function newestMtime(dir: string): number {
  let newest = 0;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) newest = Math.max(newest, statSync(join(entry.parentPath, entry.name)).mtimeMs);
  }
  return newest;
}

/** Builds dist/ when any source file is newer than it: the benchmarks measure the code as it is. */
export function ensureBuilt(progress: (message: string) => void): void {
  let built = 0;
  try {
    built = statSync(join(root, "dist/cli/main.js")).mtimeMs;
  } catch {
    // not built yet
  }
  if (built >= newestMtime(join(root, "src"))) return;
  progress("dist/ is older than src/: building");
  const result = spawnSync("npm", ["run", "--silent", "build"], { cwd: root, stdio: "inherit" });
  if (result.status !== 0) {
    // tsc still emits on type errors (someone's work in progress); measure what it emitted, loudly.
    progress("WARNING: the build reported errors; benchmarking the JavaScript it emitted");
  }
}
