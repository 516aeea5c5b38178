/**
 * Child processes of the benchmark: every one is tracked so that none outlives the run, whatever
 * way it ends (normal exit, error, Ctrl-C).
 */
import { spawn, type ChildProcess, type SpawnOptions } from "node:child_process";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

const live = new Set<ChildProcess>();

export function spawnTracked(command: string, args: string[], options: SpawnOptions): ChildProcess {
  const child = spawn(command, args, options);
  live.add(child);
  child.once("exit", () => live.delete(child));
  return child;
}

/** Asks a child to stop, and kills it if it has not within `graceMs`. */
export async function stopChild(child: ChildProcess, graceMs = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGTERM");
  const outcome = await Promise.race([exited.then(() => "exited" as const), sleep(graceMs).then(() => "late" as const)]);
  if (outcome === "late") {
    child.kill("SIGKILL");
    await exited;
  }
}

/** Last resort on any exit: no child keeps running after the benchmark. */
export function killAllChildren(): void {
  for (const child of live) child.kill("SIGKILL");
  live.clear();
}

/**
 * Resolves the first capture of `pattern` in the lines of `stream`, or rejects when the child exits
 * first or `timeoutMs` passes. `describe` names the child in the error, with its recent output.
 */
export function waitForLine(child: ChildProcess, stream: NodeJS.ReadableStream, pattern: RegExp, describe: string, timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const recent: string[] = [];
    const lines = createInterface({ input: stream });
    const finish = (error?: Error, value?: string) => {
      clearTimeout(timer);
      child.off("exit", onExit);
      lines.off("line", onLine);
      // Keep draining so a chatty child never blocks on a full pipe.
      stream.resume();
      if (error) reject(error);
      else resolve(value ?? "");
    };
    const onLine = (line: string) => {
      recent.push(line);
      if (recent.length > 20) recent.shift();
      const match = pattern.exec(line);
      if (match) finish(undefined, match[1] ?? match[0]);
    };
    const onExit = (code: number | null) => finish(new Error(`${describe} exited (${code}) before it was ready:\n${recent.join("\n")}`));
    const timer = setTimeout(() => finish(new Error(`${describe} was not ready within ${timeoutMs} ms:\n${recent.join("\n")}`)), timeoutMs);
    lines.on("line", onLine);
    child.once("exit", onExit);
  });
}
